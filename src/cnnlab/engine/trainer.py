"""The training loop: explicit, short, and the same for every task (handbook §1.4, Alg. 1).

Per batch: forward + loss (the task), zero grads, backward, optional clipping, optimiser step,
learning-rate step. Per epoch: optional evaluation, one history row, callbacks. The loop checks
every loss for NaN/inf and stops with a message naming the step rather than training on garbage.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn as nn

from cnnlab.data.loader import BatchLoader
from cnnlab.engine.callbacks import Callback
from cnnlab.engine.distributed import SINGLE, DistInfo, all_reduce_sum
from cnnlab.engine.runtime import Runtime
from cnnlab.engine.state import TrainState
from cnnlab.engine.tasks import Task

EvalFn = Callable[[nn.Module], dict[str, float]]


class DivergenceError(RuntimeError):
    """The loss or the gradients became NaN/inf; the message names the step and likely causes."""


class Trainer:
    """Runs ``epochs`` epochs of a task; state in ``TrainState``, side effects in callbacks."""

    def __init__(
        self,
        *,
        epochs: int,
        runtime: Runtime,
        grad_clip: float | None = None,
        eval_every: int = 1,
        callbacks: Sequence[Callback] = (),
        dist: DistInfo = SINGLE,
    ) -> None:
        self.epochs = epochs
        self.dist = dist
        self.runtime = runtime
        self.grad_clip = grad_clip
        self.eval_every = eval_every
        self.callbacks = list(callbacks)
        # When the running loss/accuracy are read back (a "sync"): on the CPU after every step,
        # where reading a scalar costs nothing and a NaN stops the run at once; on an
        # accelerator (None) only at the end of the epoch or when a callback asks
        # (``needs_sync``: progress, step checkpoints), because every read makes the host wait
        # for the device's queue to drain (issue 23). A NaN is then caught at the next read,
        # always before a checkpoint is written.
        self.sync_every: int | None = 1 if runtime.device.type == "cpu" else None
        self._bad_norms: torch.Tensor | None = None  # steps with a non-finite gradient norm
        self.scaler = torch.amp.GradScaler(
            runtime.device.type, enabled=runtime.amp_dtype is torch.float16
        )

    def emit(self, event: str, state: TrainState, *args: Any) -> None:
        for cb in self.callbacks:
            getattr(cb, event)(self, state, *args)

    def fit(
        self,
        model: nn.Module,
        task: Task,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        train: BatchLoader,
        evaluate: EvalFn | None = None,
        state: TrainState | None = None,
    ) -> TrainState:
        state = state if state is not None else TrainState()
        # Callbacks may read these (e.g. a max-norm projection or early stopping's snapshot).
        self.model, self.optimizer = model, optimizer
        self.emit("on_fit_start", state)
        while state.epoch < self.epochs and not state.should_stop:
            train.set_epoch(state.epoch)
            self.emit("on_epoch_start", state, len(train))
            finished = self.train_epoch(model, task, optimizer, scheduler, train, state)
            if not finished:
                break
            row = self.end_epoch(model, optimizer, state, evaluate)
            self.emit("on_epoch_end", state, row)
        self.emit("on_fit_end", state)
        return state

    def train_epoch(
        self,
        model: nn.Module,
        task: Task,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        train: BatchLoader,
        state: TrainState,
    ) -> bool:
        """One (possibly resumed) epoch; False if a callback stopped it midway."""
        model.train()
        task.train()
        dev = self.runtime.device
        loss_acc = torch.zeros((), dtype=torch.float64, device=dev)
        correct_acc = torch.zeros((), dtype=torch.int64, device=dev)
        self._bad_norms = torch.zeros((), dtype=torch.int64, device=dev)
        seen = 0
        n_batches = len(train)
        start = time.perf_counter()
        for x, y in train.iter_from(state.epoch_step):
            if self.runtime.uses_cudagraphs:
                torch.compiler.cudagraph_mark_step_begin()  # the graphs' last outputs are read
            with self.runtime.autocast():
                loss, logits = task.training_step(model, x, y)
            optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self._clip(model, optimizer, state)
            self.scaler.step(optimizer)
            self.scaler.update()
            scheduler.step()
            task.after_step()
            loss_acc.add_(loss.detach(), alpha=y.shape[0])  # in float64: one kernel, no read
            correct_acc += (logits.detach().argmax(dim=1) == y).sum()
            seen += y.shape[0]
            state.step += 1
            state.epoch_step += 1
            if (
                (self.sync_every is not None and state.epoch_step % self.sync_every == 0)
                or state.epoch_step == n_batches
                or any(cb.needs_sync(state) for cb in self.callbacks)
            ):
                self._sync(state, loss_acc, correct_acc, seen, start)
                loss_acc.zero_()
                correct_acc.zero_()
                seen, start = 0, time.perf_counter()
            self.emit("on_step_end", state)
            if state.should_stop:
                return state.epoch_step == n_batches
        return True

    def _sync(self, state: TrainState, loss_acc, correct_acc, seen: int, start: float) -> None:
        """Fold the step accumulators into the state (summed over ranks) and check the loss."""
        bad = self._bad_norms if self._bad_norms is not None else torch.zeros_like(correct_acc)
        totals = torch.stack([loss_acc, correct_acc.double(), loss_acc.new_tensor(float(seen)),
                              bad.double()])  # fmt: skip
        loss_sum, correct, seen_all, bad_norms = all_reduce_sum(totals, self.dist).tolist()
        if bad_norms:
            raise DivergenceError(
                f"gradient norm became non-finite at or before step {state.step} (epoch "
                f"{state.epoch + 1}, batch {state.epoch_step}); the learning rate is likely too "
                "large or the data holds non-finite values."
            )
        if not math.isfinite(loss_sum):
            raise DivergenceError(
                f"training loss became {loss_sum} at step {state.step} (epoch {state.epoch + 1}, "
                f"batch {state.epoch_step}). Likely causes: a learning rate too large for this "
                "model/optimiser (try 10x smaller, warm-up or gradient clipping), or non-finite "
                "input data. The last good checkpoint is kept."
            )
        state.epoch_loss_sum += loss_sum
        state.epoch_correct += round(correct)
        state.epoch_seen += round(seen_all)
        state.epoch_seconds += time.perf_counter() - start

    def _clip(self, model: nn.Module, optimizer: torch.optim.Optimizer, state: TrainState) -> None:
        if self.grad_clip is None:
            return
        self.scaler.unscale_(optimizer)
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), self.grad_clip)
        if self.scaler.is_enabled():
            return  # the scaler skips steps with inf gradients by design
        if self.sync_every != 1 and self._bad_norms is not None:
            self._bad_norms += ~torch.isfinite(norm)  # checked at the next sync, not now
            return
        if not torch.isfinite(norm):
            raise DivergenceError(
                f"gradient norm became {norm.item()} at step {state.step + 1}; the learning rate "
                "is likely too large or the data holds non-finite values."
            )

    def eval_target(self, model: nn.Module) -> nn.Module:
        """What evaluation sees: the first callback's ``eval_model`` (EMA's averaged weights),
        else ``model`` itself."""
        for cb in self.callbacks:
            target = cb.eval_model(self, model)
            if target is not None:
                return target
        return model

    def end_epoch(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        state: TrainState,
        evaluate: EvalFn | None,
    ) -> dict[str, float]:
        """Close the epoch: history row with train metrics and (every ``eval_every``) eval."""
        state.epoch += 1
        seen = max(state.epoch_seen, 1)
        row: dict[str, float] = {
            "epoch": state.epoch,
            "step": state.step,
            "lr": optimizer.param_groups[0]["lr"],
            "train_loss": state.epoch_loss_sum / seen,
            "train_acc": state.epoch_correct / seen,
            "epoch_seconds": state.epoch_seconds,
            "train_images_per_s": state.epoch_seen / max(state.epoch_seconds, 1e-9),
        }
        state.train_seconds += state.epoch_seconds
        if evaluate is not None and (
            state.epoch % self.eval_every == 0 or state.epoch == self.epochs
        ):
            row.update(evaluate(self.eval_target(model)))
        state.history.append(row)
        state.reset_epoch()
        return row
