"""Resume points of in-memory training: an interrupted ``train_model`` continues exactly."""

from __future__ import annotations

import pytest
import torch

from cnnlab.engine.callbacks import Callback
from cnnlab.engine.checkpoint import CheckpointError
from cnnlab.engine.resume import ResumePoint
from cnnlab.models.spec import build_model
from cnnlab.training.spine import train_model

SPEC = {"name": "cnn1", "params": {}, "num_classes": 4, "in_chans": 1, "input_size": 12}


class Interrupt(Exception):
    pass


class StopBefore(Callback):
    """Raises when epoch ``epoch`` (0-based) is about to start: a killed process."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_start(self, trainer, state, n_batches) -> None:
        if state.epoch == self.epoch:
            raise Interrupt


def _train(cfg, point=None, callbacks=(), lines=None):
    torch.manual_seed(0)
    model = build_model(SPEC)
    log = lines.append if lines is not None else (lambda m: None)
    history, _ = train_model(model, cfg, resume=point, callbacks=callbacks, log=log)
    return model, history


def test_interrupted_training_continues_to_the_same_weights_and_history(tiny_cfg, tmp_path):
    cfg = tiny_cfg(train={"epochs": 3})
    straight, h_straight = _train(cfg)
    point = ResumePoint(tmp_path / "r.safetensors", {"what": "test"})
    with pytest.raises(Interrupt):
        _train(cfg, point, [StopBefore(2)])
    assert point.path.is_file()
    lines: list[str] = []
    resumed, h_resumed = _train(cfg, point, lines=lines)
    assert any("after epoch 2/3" in line for line in lines)
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)  # bit-identical: optimiser, schedule, RNG and data order
    drop = ("epoch_seconds", "train_images_per_s", "test_images_per_s")
    keep = [{k: v for k, v in r.items() if k not in drop} for r in h_straight]
    assert [{k: v for k, v in r.items() if k not in drop} for r in h_resumed] == keep


def test_a_finished_training_is_loaded_not_repeated(tiny_cfg, tmp_path):
    cfg = tiny_cfg(train={"epochs": 2})
    point = ResumePoint(tmp_path / "r.safetensors", {"what": "test"})
    first, h1 = _train(cfg, point)
    again, h2 = _train(cfg, point, [StopBefore(0)])  # would raise if it trained at all
    assert h1 == h2
    pairs = zip(first.state_dict().values(), again.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)


def test_a_file_from_another_training_is_refused(tiny_cfg, tmp_path):
    cfg = tiny_cfg(train={"epochs": 1})
    _train(cfg, ResumePoint(tmp_path / "r.safetensors", {"step": 1, "epochs": 1}))
    with pytest.raises(CheckpointError, match=r"r\.safetensors: saved by a different training"):
        _train(cfg, ResumePoint(tmp_path / "r.safetensors", {"step": 1, "epochs": 2}))
