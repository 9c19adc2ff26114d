"""Exact resume on a GPU: the checkpoint carries the CUDA RNG state (dropout masks), so an
interrupted and resumed run ends where the uninterrupted one does."""

from __future__ import annotations

import pytest
import torch

from cnnlab.engine.callbacks import Callback
from cnnlab.engine.checkpoint import load_checkpoint
from cnnlab.training.spine import run_training

TIME_KEYS = {"epoch_seconds", "train_images_per_s"}


class Kill(Callback):
    def __init__(self, at_step: int) -> None:
        self.at_step = at_step

    def on_step_end(self, trainer, state) -> None:
        if state.step == self.at_step:
            raise KeyboardInterrupt


def _rows(history):
    return [{k: v for k, v in r.items() if k not in TIME_KEYS} for r in history]


def test_checkpoint_holds_and_restores_the_cuda_rng_state(tmp_path, cuda_cfg):
    run_training(cuda_cfg(model={"name": "cnn2"}, train={"epochs": 1}), tmp_path / "r",
                 log=lambda m: None)  # fmt: skip
    ckpt = load_checkpoint(tmp_path / "r")
    saved = ckpt.tensors["rng.cuda.0"]  # one process: every device's state, by index
    torch.cuda.manual_seed(12345)
    assert not torch.equal(torch.cuda.get_rng_state(0), saved)
    ckpt.restore_rng(0)
    assert torch.equal(torch.cuda.get_rng_state(0), saved)


@pytest.mark.parametrize("kill_at", [8, 10])  # the end of epoch 1 (8 steps), mid epoch 2
def test_resume_with_dropout_on_cuda_is_exact(tmp_path, cuda_cfg, exact_cuda, kill_at):
    # cnn2 has dropout: without the CUDA RNG state the resumed masks (and weights) differ.
    cfg = cuda_cfg(model={"name": "cnn2"}, train={"epochs": 3, "checkpoint_steps": 3,
                                                   "precision": "fp32"})  # fmt: skip
    ref = run_training(cfg, tmp_path / "ref", log=lambda m: None)
    with pytest.raises(KeyboardInterrupt):
        run_training(cfg, tmp_path / "cut", log=lambda m: None, callbacks=[Kill(kill_at)])
    assert load_checkpoint(tmp_path / "cut").meta["state"]["step"] < kill_at
    resumed = run_training(cfg, tmp_path / "cut", resume=True, log=lambda m: None)
    a, b = load_checkpoint(tmp_path / "ref"), load_checkpoint(tmp_path / "cut")
    # Tolerance: deterministic cuDNN makes the runs bit-equal in practice; 1e-6 leaves room
    # for an atomic-add kernel, far below what other dropout masks do (~1e-2 after 24 steps).
    for key, value in a.model_state().items():
        assert torch.allclose(value.double(), b.model_state()[key].double(), atol=1e-6), key
    ra, rb = _rows(a.meta["state"]["history"]), _rows(b.meta["state"]["history"])
    for x, y in zip(ra, rb, strict=True):
        assert x.keys() == y.keys()
        for k in x:
            assert x[k] == pytest.approx(y[k], rel=1e-6, abs=1e-7), k
    assert resumed["test_acc"] == ref["test_acc"]
