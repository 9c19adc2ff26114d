"""Training on a GPU: bf16, fp16 with the grad scaler, no host sync per step, torch.compile."""

from __future__ import annotations

import warnings

import pytest
import torch

from cnnlab.engine.callbacks import Callback
from cnnlab.engine.checkpoint import load_checkpoint
from cnnlab.training.spine import run_training

SYNC = "synchronizing CUDA operation"


class Inspect(Callback):
    """Keep what the trainer ran with."""

    def on_fit_end(self, trainer, state) -> None:
        self.scaler_enabled = trainer.scaler.is_enabled()
        self.scale = trainer.scaler.get_scale() if self.scaler_enabled else None
        self.fused = bool(trainer.optimizer.defaults.get("fused"))
        self.device = next(trainer.model.parameters()).device
        self.sync_every = trainer.sync_every


def _train(cfg, path, *callbacks):
    return run_training(cfg, path, log=lambda m: None, callbacks=list(callbacks))


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_training_learns(tmp_path, cuda_cfg, precision):
    seen = Inspect()
    cfg = cuda_cfg(train={"epochs": 3, "precision": precision})
    metrics = _train(cfg, tmp_path / "run", seen)
    hist = load_checkpoint(tmp_path / "run").meta["state"]["history"]
    assert metrics["precision"] == precision and metrics["device"].startswith("cuda")
    assert seen.device.type == "cuda" and seen.fused  # torch's fused Adam on CUDA
    assert seen.sync_every is None  # running sums read per epoch, not per step
    assert hist[-1]["train_loss"] < 0.7 * hist[0]["train_loss"]
    assert metrics["test_acc"] > 0.9  # 4 well-separated synthetic classes
    if precision == "fp16":
        assert seen.scaler_enabled and 0 < seen.scale < float("inf")
    else:
        assert not seen.scaler_enabled
    weights = load_checkpoint(tmp_path / "run").model_state()
    assert all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point())


class SyncCounter(Callback):
    """Turn the sync debug mode to 'warn' for every step but the epoch's last (whose sums are
    read by design); evaluation and checkpoints are outside."""

    def on_epoch_start(self, trainer, state, num_batches) -> None:
        self.last = num_batches
        torch.cuda.set_sync_debug_mode("warn")

    def on_step_end(self, trainer, state) -> None:
        if state.epoch_step == self.last - 1:
            torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_no_host_sync_inside_an_epoch(tmp_path, cuda_cfg, precision):
    # Augmented on the device, label smoothing, one-cycle schedule: the best recipes' parts.
    cfg = cuda_cfg(
        data={"augment": ["hflip", {"name": "random_crop", "padding": 2}, "random_erasing"]},
        loss={"name": "cross_entropy", "params": {"label_smoothing": 0.1}},
        schedule={"name": "onecycle"}, train={"epochs": 2, "precision": precision},
    )  # fmt: skip
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _train(cfg, tmp_path / "run", SyncCounter())
    finally:
        torch.cuda.set_sync_debug_mode("default")
    syncs = [str(w.message).splitlines()[0] for w in caught if SYNC in str(w.message)]
    assert syncs == [], syncs[:5]


def test_evaluation_reads_back_once_however_many_batches(cuda_cfg):
    from cnnlab.data.bundle import build_data
    from cnnlab.evaluation.evaluate import evaluate
    from cnnlab.models import create_model

    cfg = cuda_cfg()
    data = build_data(cfg.data, seed=0, device=torch.device("cuda"))
    model = create_model("cnn1", num_classes=4, in_chans=1, input_size=12).cuda()
    counts = []
    for batch in (64, 8):  # 1 and 8 batches of the 64 test images
        data.test.batch_size = batch
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                evaluate(model, data.test, num_classes=4, keep_outputs=True)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        counts.append(sum(SYNC in str(w.message) for w in caught))
    assert counts[0] == counts[1] <= 6, counts  # the final reads only


def test_cuda_run_matches_the_cpu_run_in_fp32(tmp_path, tiny_cfg, exact_cuda):
    # Same seed, same data order, fp32 without TF32: the GPU follows the CPU closely.
    common = {"precision": "fp32", "channels_last": "off", "epochs": 2}
    cpu = _train(tiny_cfg(train={**common, "device": "cpu"}), tmp_path / "cpu")
    gpu = _train(tiny_cfg(train={**common, "device": "cuda"}), tmp_path / "gpu")
    a = load_checkpoint(tmp_path / "cpu").model_state()
    b = load_checkpoint(tmp_path / "gpu").model_state()
    for key, value in a.items():
        if value.is_floating_point():
            assert torch.allclose(value, b[key], rtol=1e-3, atol=1e-4), key
    assert gpu["test_loss"] == pytest.approx(cpu["test_loss"], rel=1e-3, abs=1e-4)


@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_compiled_training_learns_and_is_recorded(tmp_path, cuda_cfg, mode):
    cfg = cuda_cfg(train={"epochs": 2, "compile": True, "compile_mode": mode})
    metrics = _train(cfg, tmp_path / "run")
    env = (tmp_path / "run" / "env.json").read_text()
    assert f"compiled ({mode})" in env
    assert metrics["test_acc"] > 0.8
    assert load_checkpoint(tmp_path / "run").model_state()  # saved under the module's own keys
