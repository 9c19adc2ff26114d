"""The loop end to end on synthetic data: learning, divergence guard, exact resume."""

from __future__ import annotations

import pytest
import torch

from cnnlab.engine.callbacks import Callback
from cnnlab.engine.checkpoint import load_checkpoint
from cnnlab.engine.trainer import DivergenceError
from cnnlab.training.spine import run_training

TIME_KEYS = {"epoch_seconds", "train_images_per_s"}


def _quiet(msg: str) -> None:
    pass


def test_loss_falls_and_run_dir_is_complete(tmp_path, tiny_cfg):
    cfg = tiny_cfg(train={"epochs": 3})
    metrics = run_training(cfg, tmp_path / "run", log=_quiet)
    hist = load_checkpoint(tmp_path / "run").meta["state"]["history"]
    assert hist[-1]["train_loss"] < hist[0]["train_loss"] * 0.7
    assert metrics["test_acc"] > 0.9  # 4 well-separated synthetic classes
    names = {p.name for p in (tmp_path / "run").iterdir()}
    assert {
        "config.yaml",
        "env.json",
        "history.csv",
        "metrics.json",
        "checkpoint.safetensors",
        "predictions.safetensors",
    } <= names
    assert metrics["epochs"] == 3 and metrics["params"] > 0 and metrics["macs"] > 0


def test_divergence_is_caught_with_the_step(tmp_path, tiny_cfg):
    cfg = tiny_cfg(optim={"name": "sgd", "lr": 1e12}, train={"epochs": 2})
    with pytest.raises(DivergenceError, match=r"at step \d+ \(epoch 1"):
        run_training(cfg, tmp_path / "run", log=_quiet)


class _Kill(Callback):
    """Simulate a crash: raise after a given optimiser step."""

    def __init__(self, at_step: int) -> None:
        self.at_step = at_step

    def on_step_end(self, trainer, state) -> None:
        if state.step == self.at_step:
            raise KeyboardInterrupt


def _strip_times(history):
    return [{k: v for k, v in row.items() if k not in TIME_KEYS} for row in history]


@pytest.mark.parametrize("kill_at", [8, 10])  # last batch of epoch 1 (8 steps), mid epoch 2
def test_resume_is_exact(tmp_path, tiny_cfg, kill_at):
    cfg = tiny_cfg(model={"name": "cnn2"}, train={"epochs": 3, "checkpoint_steps": 3})
    ref = run_training(cfg, tmp_path / "ref", log=_quiet)

    with pytest.raises(KeyboardInterrupt):
        run_training(cfg, tmp_path / "cut", log=_quiet, callbacks=[_Kill(kill_at)])
    saved = load_checkpoint(tmp_path / "cut").meta["state"]["step"]
    assert saved < kill_at  # the run died after its last checkpoint
    resumed = run_training(cfg, tmp_path / "cut", resume=True, log=_quiet)

    a = load_checkpoint(tmp_path / "ref")
    b = load_checkpoint(tmp_path / "cut")
    for key, value in a.model_state().items():
        assert torch.equal(value, b.model_state()[key]), key
    assert _strip_times(a.meta["state"]["history"]) == _strip_times(b.meta["state"]["history"])
    assert resumed["test_acc"] == ref["test_acc"] and resumed["test_loss"] == ref["test_loss"]


def test_examples_are_spread_over_classes():
    from cnnlab.reports.predictions import pick_examples

    targets = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])
    preds = torch.tensor([0, 0, 1, 1, 0, 2, 2, 0])
    good, bad = pick_examples(targets, preds, k=4)
    assert good.tolist() == [0, 3, 5, 1]  # class 0, 1, 2, then the second of class 0
    assert bad.tolist() == [2, 4, 7]
