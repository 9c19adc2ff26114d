"""Snapshot ensembles (handbook §13.2.1): save points of the cyclic cosine schedule (eq. 13.1)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn

from cnnlab.config import ConfigError
from cnnlab.engine.callbacks import Callback
from cnnlab.engine.state import TrainState
from cnnlab.ensembles import Ensemble, EnsembleError, SnapshotSaver, list_snapshots
from cnnlab.ensembles.snapshots import snapshot_callbacks, snapshot_info, snapshot_steps
from cnnlab.models.spec import build_model
from cnnlab.optim.schedules import cosine_restarts, with_warmup
from cnnlab.training.assemble import model_spec_of
from cnnlab.training.spine import train_model


def restart_points(factor, total: int, start: int = 1) -> list[int]:
    """Iteration counts t after which the schedule jumps back up (f(t) > f(t-1))."""
    return [t for t in range(max(start, 1), total) if factor(t) > factor(t - 1)]


@pytest.mark.parametrize("total,cycles", [(100, 4), (300, 6), (10, 3), (10, 4)])
def test_snapshot_steps_are_the_schedules_restart_points(total, cycles):
    f = cosine_restarts(total_steps=total, steps_per_epoch=1, cycles=cycles)
    steps = snapshot_steps(total, cycles)
    assert steps[:-1] == restart_points(f, total) and steps[-1] == total
    if (total, cycles) == (10, 4):  # ceil(10/4) = 3: the 4th cycle is cut to one iteration
        assert steps == [3, 6, 9, 10]
    if (total, cycles) == (100, 4):
        assert steps == [25, 50, 75, 100]
    if (total, cycles) == (300, 6):  # the handbook's example: restart after 50 (eta(51) = eta0)
        assert steps[0] == 50 and f(50) == 1.0 and f(49) == pytest.approx(9.87e-4, rel=1e-2)


def test_snapshot_steps_with_warmup_follow_build_scheduler():
    f = with_warmup(cosine_restarts(total_steps=100, steps_per_epoch=1, cycles=4), 10)
    steps = snapshot_steps(110, 4, warmup_steps=10)
    assert steps == [35, 60, 85, 110] and steps[:-1] == restart_points(f, 110, start=11)


def test_callback_saves_at_the_end_of_each_cycle(tmp_path):
    model = nn.Linear(3, 2)
    trainer = SimpleNamespace(epochs=4, model=model, dist=SimpleNamespace(is_main=True))
    saver = SnapshotSaver(tmp_path, cycles=4)
    state = TrainState()
    for epoch in range(4):
        saver.on_epoch_start(trainer, state, 25)
        for _ in range(25):
            state.step += 1
            with torch.no_grad():
                model.weight.add_(1.0)  # a different model after every step
            saver.on_step_end(trainer, state)
        state.epoch = epoch + 1
    assert [(k, step) for k, step, _ in saver.saved] == [(1, 25), (2, 50), (3, 75), (4, 100)]
    assert [k for k, _ in list_snapshots(tmp_path)] == [1, 2, 3, 4]
    assert snapshot_info(tmp_path / "snapshot_2.safetensors")["step"] == 50


class LrProbe(Callback):
    def __init__(self) -> None:
        self.lr: dict[int, float] = {}

    def on_step_end(self, trainer, state) -> None:
        self.lr[state.step] = trainer.optimizer.param_groups[0]["lr"]


def test_snapshots_during_training_and_the_snapshot_ensemble(tiny_cfg, tmp_path):
    # 800 images / batch 32 = 25 iterations per epoch; 4 epochs -> T = 100, M = 4 cycles
    cfg = tiny_cfg(
        data={"params": {"train_size": 800, "test_size": 64, "image_size": 12, "num_classes": 4}},
        train={"epochs": 4, "progress": False},
        optim={"name": "sgd", "lr": 0.1, "params": {"momentum": 0.9}},
        schedule={"name": "cosine_restarts", "params": {"cycles": 4}},
        model={"name": "cnn1", "params": {"norm": "bn"}},
    )
    torch.manual_seed(0)
    spec = {"name": "cnn1", "params": {"norm": "bn"}, "num_classes": 4, "in_chans": 1,
            "input_size": 12}  # fmt: skip
    model = build_model(spec)
    saver = SnapshotSaver.from_config(cfg, tmp_path, spec=spec)
    probe = LrProbe()
    _, data = train_model(model, cfg, callbacks=[saver, probe], log=lambda m: None)
    assert [step for _, step, _ in saver.saved] == [25, 50, 75, 100]
    for step in (25, 50, 75):  # saved at the LR minimum; the next iteration restarts at eta0
        assert probe.lr[step] == pytest.approx(0.1) and probe.lr[step - 1] < 0.001
    assert model_spec_of(cfg, data.dataset) == spec
    ens = Ensemble.from_snapshots(tmp_path, last=2)
    assert ens.names == ["snapshot_3", "snapshot_4"] and ens.meta["snapshots"] == [3, 4]
    final = ens.members[1].state_dict()
    for key, value in model.state_dict().items():  # the last snapshot is the final model
        assert torch.equal(final[key], value)
    assert len(Ensemble.from_snapshots(tmp_path).members) == 4
    with pytest.raises(EnsembleError, match="last=5, but the run holds 4"):
        Ensemble.from_snapshots(tmp_path, last=5)


def test_errors_name_the_problem(tiny_cfg, tmp_path):
    with pytest.raises(ConfigError, match="cosine_restarts"):
        SnapshotSaver.from_config(tiny_cfg(), tmp_path)
    with pytest.raises(EnsembleError, match="no snapshot_k.safetensors"):
        Ensemble.from_snapshots(tmp_path)
    assert math.isfinite(snapshot_steps(1, 1)[0])


def test_snapshot_callbacks_hook_for_cnnlab_train(tiny_cfg, tmp_path):
    cfg = tiny_cfg(schedule={"name": "cosine_restarts", "params": {"cycles": 3}})

    def with_mode(mode):  # stands in for a RunConfig with a train.snapshots field
        return SimpleNamespace(train=SimpleNamespace(snapshots=mode), schedule=cfg.schedule)

    assert snapshot_callbacks(cfg, tmp_path, {}) == []  # no such field yet: off
    assert snapshot_callbacks(with_mode("off"), tmp_path, {}) == []
    (saver,) = snapshot_callbacks(with_mode("on"), tmp_path, {})
    assert saver.cycles == 3
    (saver,) = snapshot_callbacks(with_mode("epochs"), tmp_path, {})
    assert saver.cycles is None
    with pytest.raises(ConfigError, match="train.snapshots"):
        snapshot_callbacks(with_mode("sometimes"), tmp_path, {})


def test_per_epoch_snapshots_follow_epoch_ends(tmp_path):
    model = nn.Linear(3, 2)
    trainer = SimpleNamespace(epochs=3, model=model, dist=SimpleNamespace(is_main=True))
    saver = SnapshotSaver(tmp_path, cycles=None)
    state = TrainState()
    for epoch in range(3):
        saver.on_epoch_start(trainer, state, 7)
        for _ in range(7):
            state.step += 1
            saver.on_step_end(trainer, state)
        state.epoch = epoch + 1
        saver.on_epoch_end(trainer, state, {})
    assert [(k, step) for k, step, _ in saver.saved] == [(1, 7), (2, 14), (3, 21)]
