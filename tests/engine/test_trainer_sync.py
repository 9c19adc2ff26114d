"""When the trainer reads its running sums back (issue 23): per step on the CPU, per epoch (or on
a callback's ``needs_sync``) on an accelerator. Tested on the CPU by switching a trainer to the
accelerator policy: the numbers must not change, only how often they are read."""

from __future__ import annotations

import pytest
import torch

from cnnlab.engine.callbacks import Callback, ProgressBar
from cnnlab.engine.checkpoint import load_checkpoint
from cnnlab.engine.trainer import DivergenceError
from cnnlab.training.spine import run_training

TIME_KEYS = {"epoch_seconds", "train_images_per_s"}


class AcceleratorPolicy(Callback):
    """Make the trainer sync as it does on a GPU (``sync_every=None``) and count the syncs."""

    def __init__(self, sync_every: int | None = None, ask_at: tuple[int, ...] = ()) -> None:
        self.sync_every, self.ask_at, self.syncs = sync_every, ask_at, []

    def needs_sync(self, state) -> bool:
        return state.step in self.ask_at

    def on_fit_start(self, trainer, state) -> None:
        trainer.sync_every = self.sync_every
        inner = trainer._sync

        def counted(st, *args):
            self.syncs.append(st.step)
            inner(st, *args)

        trainer._sync = counted


def _history(run_dir):
    rows = load_checkpoint(run_dir).meta["state"]["history"]
    return [{k: v for k, v in r.items() if k not in TIME_KEYS} for r in rows]


def test_epoch_end_reads_give_the_same_history_as_per_step_reads(tmp_path, tiny_cfg):
    cfg = tiny_cfg(train={"epochs": 2})  # 256 images / batch 32: 8 steps per epoch
    per_step, per_epoch = AcceleratorPolicy(sync_every=1), AcceleratorPolicy(sync_every=None)
    run_training(cfg, tmp_path / "a", log=lambda m: None, callbacks=[per_step])
    run_training(cfg, tmp_path / "b", log=lambda m: None, callbacks=[per_epoch])
    assert per_step.syncs == list(range(1, 17))
    assert per_epoch.syncs == [8, 16]  # the last batch of each epoch only
    a, b = _history(tmp_path / "a"), _history(tmp_path / "b")
    assert [r["train_loss"] for r in a] == pytest.approx([r["train_loss"] for r in b], rel=1e-12)
    assert [r["train_acc"] for r in a] == [r["train_acc"] for r in b]
    assert [r["test_acc"] for r in a] == [r["test_acc"] for r in b]


def test_a_callback_that_needs_the_sums_gets_a_read_after_its_step(tmp_path, tiny_cfg):
    policy = AcceleratorPolicy(sync_every=None, ask_at=(3, 11))
    run_training(tiny_cfg(train={"epochs": 2}), tmp_path / "r", log=lambda m: None,
                 callbacks=[policy])  # fmt: skip
    assert policy.syncs == [3, 8, 11, 16]


def test_a_nan_loss_is_still_caught_at_the_epoch_end_read(tmp_path, tiny_cfg):
    cfg = tiny_cfg(optim={"name": "sgd", "lr": 1e12}, train={"epochs": 2})
    with pytest.raises(DivergenceError, match=r"at step 8 \(epoch 1, batch 8\)"):
        run_training(cfg, tmp_path / "run", log=lambda m: None, callbacks=[AcceleratorPolicy()])
    assert not (tmp_path / "run" / "checkpoint.safetensors").exists()  # nothing saved after it


class Poison(Callback):
    """Make one image infinite before the second epoch: its gradients become non-finite."""

    def on_epoch_start(self, trainer, state, num_batches) -> None:
        if state.epoch == 1:
            trainer.model.register_forward_pre_hook(lambda m, args: (args[0] * float("inf"),))


def test_a_non_finite_gradient_norm_is_reported_at_the_next_read(tmp_path, tiny_cfg):
    cfg = tiny_cfg(train={"epochs": 2, "grad_clip": 1.0})
    with pytest.raises(DivergenceError, match=r"non-finite at or before step 16 \(epoch 2"):
        run_training(cfg, tmp_path / "run", log=lambda m: None,
                     callbacks=[AcceleratorPolicy(), Poison()])  # fmt: skip
    # and on the CPU's per-step policy, at once, as before
    with pytest.raises(DivergenceError, match=r"gradient norm became nan at step 9"):
        run_training(cfg, tmp_path / "cpu", log=lambda m: None, callbacks=[Poison()])


def test_progress_bar_asks_for_reads_only_when_live():
    bar = ProgressBar(3, live=False)
    assert not bar.needs_sync(None)
    bar._bar, bar._last = object(), 0.0  # a live bar that has not been updated for a while
    assert bar.needs_sync(None)


def test_accumulating_the_loss_in_place_equals_the_float64_product():
    # The trainer's ``loss_acc.add_(loss, alpha=n)`` against the formula it replaced.
    gen = torch.Generator().manual_seed(0)
    losses, ns = torch.rand(50, generator=gen), torch.randint(1, 200, (50,), generator=gen)
    acc = torch.zeros((), dtype=torch.float64)
    ref = torch.zeros((), dtype=torch.float64)
    for loss, n in zip(losses, ns.tolist(), strict=True):
        acc.add_(loss, alpha=n)
        ref += loss.double() * n
    assert float(acc) == pytest.approx(float(ref), rel=1e-15)
