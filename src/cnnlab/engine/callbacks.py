"""Callbacks observe the loop and signal through ``TrainState`` (never swap model/data/loss).

Events: ``on_fit_start``, ``on_epoch_start(n_batches)``, ``on_step_end``,
``on_epoch_end(row)``, ``on_fit_end``; each receives ``(trainer, state, ...)``. One query,
``eval_model(trainer, model)``, lets a callback name the network evaluation sees (EMA).
"""

from __future__ import annotations

import csv
import io
import sys
import time
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path
from typing import Any, TextIO

from cnnlab.engine.checkpoint import atomic_write_text
from cnnlab.engine.state import TrainState


class Callback:
    def needs_sync(self, state: TrainState) -> bool:
        """True if this callback reads the running metrics after the coming step."""
        return False

    def on_fit_start(self, trainer: Any, state: TrainState) -> None: ...

    def on_epoch_start(self, trainer: Any, state: TrainState, num_batches: int) -> None: ...

    def on_step_end(self, trainer: Any, state: TrainState) -> None: ...

    def on_epoch_end(self, trainer: Any, state: TrainState, row: dict[str, float]) -> None: ...

    def on_fit_end(self, trainer: Any, state: TrainState) -> None: ...

    def eval_model(self, trainer: Any, model: Any) -> Any:
        """The network per-epoch evaluation should see instead of ``model`` (EMA's average),
        or None to leave it to the others; the trainer takes the first one given."""
        return None


class ProgressBar(Callback):
    """A live bar per epoch (loss, accuracy, images/s) on a terminal, one line per epoch
    otherwise (logs and CI stay readable)."""

    def __init__(
        self,
        total_epochs: int,
        stream: TextIO | None = None,
        prefix: str = "",
        live: bool | None = None,
    ) -> None:
        self.total = total_epochs
        self.stream = stream if stream is not None else sys.stderr
        self.prefix = prefix
        is_tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.live = is_tty if live is None else live and is_tty
        self._bar: Any = None
        self._last = 0.0

    def needs_sync(self, state: TrainState) -> bool:
        # A live bar shows the running loss: on a GPU, where the trainer otherwise reads it
        # only at the end of an epoch, ask for it about twice a second, no more.
        return self._bar is not None and time.monotonic() - self._last > 0.5

    def on_epoch_start(self, trainer: Any, state: TrainState, num_batches: int) -> None:
        if not self.live:
            return
        from tqdm import tqdm

        self._bar = tqdm(
            total=num_batches,
            initial=state.epoch_step,
            desc=f"{self.prefix}epoch {state.epoch + 1}/{self.total}",
            file=self.stream,
            leave=False,
            dynamic_ncols=True,
            unit="batch",
        )

    def on_step_end(self, trainer: Any, state: TrainState) -> None:
        if self._bar is None:
            return
        self._bar.update(state.epoch_step - self._bar.n)
        now = time.monotonic()
        if now - self._last > 0.5 and state.epoch_seen:
            self._last = now
            self._bar.set_postfix_str(
                f"loss {state.epoch_loss_sum / state.epoch_seen:.4f} "
                f"acc {state.epoch_correct / state.epoch_seen:.4f} "
                f"{state.epoch_seen / max(state.epoch_seconds, 1e-9):,.0f} img/s",
                refresh=False,
            )

    def on_epoch_end(self, trainer: Any, state: TrainState, row: dict[str, float]) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        print(f"{self.prefix}{format_row(row, self.total)}", file=self.stream, flush=True)


class EpochLog(Callback):
    """One ``log`` line per epoch as it ends, for trainings without a run directory or a bar
    (fine-tuning, distillation students, ensemble members), which can run for hours."""

    def __init__(self, log: Callable[[str], None], total_epochs: int) -> None:
        self.log, self.total = log, total_epochs

    def on_epoch_end(self, trainer: Any, state: TrainState, row: dict[str, float]) -> None:
        self.log(f"epoch {int(row['epoch'])}/{self.total}: train loss {row['train_loss']:.4f}, "
                 f"test acc {row['test_acc']:.4f} ({row['epoch_seconds']:.0f} s)")  # fmt: skip


def format_row(row: dict[str, float], total_epochs: int) -> str:
    parts = [
        f"epoch {int(row['epoch'])}/{total_epochs}",
        f"train loss {row['train_loss']:.4f} acc {row['train_acc']:.4f}",
    ]
    for split in ("val", "test"):
        if f"{split}_acc" in row:
            parts.append(f"{split} loss {row[f'{split}_loss']:.4f} acc {row[f'{split}_acc']:.4f}")
    parts.append(f"{row['epoch_seconds']:.1f}s ({row['train_images_per_s']:,.0f} img/s)")
    return " | ".join(parts)


class StepClock(Callback):
    """Record ``time.perf_counter()`` after every optimiser step and stop training after
    ``stop_after`` steps: the clock of the speed probes under benchmarks/ (warm-up steps are
    the first marks, dropped by the caller)."""

    def __init__(self, stop_after: int) -> None:
        self.stop_after = stop_after
        self.marks: list[float] = []

    def on_step_end(self, trainer: Any, state: TrainState) -> None:
        self.marks.append(time.perf_counter())
        if state.step >= self.stop_after:
            state.should_stop = True

    def step_seconds(self, skip: int) -> list[float]:
        """Seconds of each step after the first ``skip`` (the warm-up)."""
        timed = self.marks[max(skip - 1, 0) :]
        return [b - a for a, b in pairwise(timed)]


class HistoryWriter(Callback):
    """Rewrites ``history.csv`` atomically after every epoch."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def on_epoch_end(self, trainer: Any, state: TrainState, row: dict[str, float]) -> None:
        write_history(self.path, state.history)


def write_history(path: Path, history: list[dict[str, float]]) -> None:
    columns: list[str] = []
    for row in history:
        columns += [k for k in row if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    atomic_write_text(path, buf.getvalue())


class Checkpointer(Callback):
    """Calls ``save(state)`` every ``every_epochs`` epochs (and at the end of the run), and
    every ``every_steps`` optimiser steps if set (for long epochs / fault tolerance)."""

    def __init__(
        self, save: Callable[[TrainState], None], every_epochs: int = 1, every_steps: int = 0
    ) -> None:
        self.save = save
        self.every_epochs = every_epochs
        self.every_steps = every_steps

    def needs_sync(self, state: TrainState) -> bool:
        # asked after the step counter moved on, right before on_step_end
        return bool(self.every_steps) and state.step % self.every_steps == 0

    def on_step_end(self, trainer: Any, state: TrainState) -> None:
        if self.every_steps and state.step % self.every_steps == 0:
            self.save(state)

    def on_epoch_end(self, trainer: Any, state: TrainState, row: dict[str, float]) -> None:
        last = state.epoch == trainer.epochs or state.should_stop
        if last or (self.every_epochs and state.epoch % self.every_epochs == 0):
            self.save(state)


class TensorBoardLogger(Callback):
    """Per-epoch scalars (losses, accuracies, learning rate, speed) as TensorBoard events
    (``tensorboard --logdir RUN_DIR/tensorboard``); needs the optional tensorboard package."""

    def __init__(self, log_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(log_dir))

    def on_epoch_end(self, trainer: Any, state: TrainState, row: dict[str, float]) -> None:
        for key, value in row.items():
            if key not in ("epoch", "step"):
                self.writer.add_scalar(key, value, global_step=int(row["epoch"]))
        self.writer.flush()

    def on_fit_end(self, trainer: Any, state: TrainState) -> None:
        self.writer.close()
