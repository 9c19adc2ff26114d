"""Saving snapshots for snapshot ensembles (handbook §13.2.1; Huang et al., ICLR 2017).

One training run with the cyclic cosine schedule of eq. (13.1) (``schedule.name:
cosine_restarts``, ``params.cycles: M``, base learning rate eta0 = 0.1 or 0.2 with SGD) visits M
local optima: the learning rate falls from eta0 to ~0 over ``ceil(T/M)`` iterations and then
restarts. ``SnapshotSaver`` saves the weights at the end of every cycle, i.e. after iterations
``k * ceil(T/M)`` and after the last one, as ``snapshot_k.safetensors`` (k = 1, 2, ...) in the
run directory (written atomically); ``Ensemble.from_snapshots(run_dir, last=m)`` averages the
last m of them (early snapshots are weaker). t counts iterations, not epochs (E.6 item 65).

When ``ceil(T/M) * M > T`` the last cycle is cut short (its learning rate does not reach 0) and
can end before the M-th restart point: there is one snapshot per cycle actually run.

``cycles=None`` saves one snapshot per epoch instead, with any schedule: the "epoch fusion"
of handbook §13.2.2 (ensemble the last few epochs of one ordinary run).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import torch.nn as nn

from cnnlab.engine.callbacks import Callback
from cnnlab.engine.checkpoint import atomic_write_bytes
from cnnlab.engine.state import TrainState
from cnnlab.engine.tasks import unwrap
from cnnlab.errors import ConfigError, EnsembleError
from cnnlab.registry import SCHEDULES

SNAPSHOT = re.compile(r"^snapshot_(\d+)\.safetensors$")
HEADER_KEY = "cnnlab_snapshot"


def snapshot_steps(total_steps: int, cycles: int, warmup_steps: int = 0) -> list[int]:
    """Iteration counts after which a cycle of ``cosine_restarts`` ends (1-based, ascending).

    Mirrors ``build_scheduler``: the cyclic schedule runs over ``T = total - warmup`` iterations
    with period ``ceil(T/M)``; cycle k ends after ``warmup + k * period`` iterations, and the run
    itself ends after ``total_steps``.
    """
    if total_steps < 1 or cycles < 1 or warmup_steps < 0:
        raise EnsembleError(
            f"snapshot_steps: need total_steps >= 1, cycles >= 1, warmup >= 0; got "
            f"{total_steps}, {cycles}, {warmup_steps}"
        )
    main = max(1, total_steps - warmup_steps)
    period = math.ceil(main / cycles)
    ends = [warmup_steps + k * period for k in range(1, cycles) if k * period < main]
    return [*ends, total_steps]


def _bare(model: nn.Module) -> nn.Module:
    """The network inside torch.compile and DDP wrappers (keys without prefixes)."""
    return unwrap(getattr(model, "_orig_mod", model))


class SnapshotSaver(Callback):
    """Save ``snapshot_k.safetensors`` at the end of every cosine cycle (see module docstring),
    or of every epoch k when ``cycles`` is None.

    ``total_steps`` defaults to ``epochs * batches per epoch``, read when training starts (the
    same count ``build_scheduler`` uses). ``spec`` (the run's model description) is stored in
    each file so the snapshots can be rebuilt without the run's checkpoint.
    """

    def __init__(
        self,
        run_dir: str | Path,
        *,
        cycles: int | None,
        warmup_epochs: float = 0.0,
        total_steps: int | None = None,
        spec: dict[str, Any] | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.cycles, self.warmup_epochs = cycles, warmup_epochs
        self.total_steps, self.spec = total_steps, spec
        self.steps: list[int] | None = None
        self.saved: list[tuple[int, int, Path]] = []  # (k, step, path)

    @classmethod
    def from_config(
        cls,
        cfg: Any,
        run_dir: str | Path,
        *,
        spec: dict[str, Any] | None = None,
        per_epoch: bool = False,
    ) -> SnapshotSaver:
        """A saver matching ``cfg``'s ``cosine_restarts`` schedule (a clear error otherwise);
        ``per_epoch``: one snapshot per epoch, any schedule."""
        if per_epoch:
            return cls(run_dir, cycles=None, spec=spec)
        if cfg.schedule.name != "cosine_restarts":
            raise ConfigError(
                f"snapshots need schedule.name: cosine_restarts (eq. 13.1), found "
                f"{cfg.schedule.name!r}"
            )
        default = SCHEDULES.parameters("cosine_restarts")["cycles"].default
        cycles = int(cfg.schedule.params.get("cycles", default))
        return cls(run_dir, cycles=cycles, warmup_epochs=cfg.schedule.warmup_epochs, spec=spec)

    def on_epoch_start(self, trainer: Any, state: TrainState, num_batches: int) -> None:
        if self.steps is None and self.cycles is not None:
            total = self.total_steps or trainer.epochs * num_batches
            warmup = round(self.warmup_epochs * num_batches)
            self.steps = snapshot_steps(total, self.cycles, warmup)

    def on_step_end(self, trainer: Any, state: TrainState) -> None:
        if self.steps is None or state.step not in self.steps:
            return
        dist = getattr(trainer, "dist", None)
        if dist is not None and not dist.is_main:
            return  # one writer under DDP
        k = self.steps.index(state.step) + 1
        self.saved.append((k, state.step, self.save(trainer.model, k, state)))

    def on_epoch_end(self, trainer: Any, state: TrainState, row: dict[str, float]) -> None:
        if self.cycles is not None:
            return
        dist = getattr(trainer, "dist", None)
        if dist is None or dist.is_main:
            self.saved.append(
                (state.epoch, state.step, self.save(trainer.model, state.epoch, state))
            )

    def save(self, model: nn.Module, k: int, state: TrainState) -> Path:
        from safetensors.torch import save

        tensors = {
            name: t.detach().cpu().contiguous().clone()
            for name, t in _bare(model).state_dict().items()
        }
        info = {"cycle": k, "step": state.step, "epoch": state.epoch, "model": self.spec}
        path = self.run_dir / f"snapshot_{k}.safetensors"
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, save(tensors, metadata={HEADER_KEY: json.dumps(info)}))
        return path


def snapshot_callbacks(cfg: Any, run_dir: str | Path, spec: dict[str, Any]) -> list[Callback]:
    """``[SnapshotSaver]`` when the config asks for snapshots, else ``[]``: the hook for
    ``cnnlab train`` (``TrainingRun.callbacks`` adds these). ``train.snapshots``: false (off),
    true or "cycles" (cycle ends of ``cosine_restarts``), "epochs" (every epoch end)."""
    mode = getattr(cfg.train, "snapshots", False)
    if mode in (False, None, "off", "none"):
        return []
    if mode not in (True, "cycles", "epochs", "on"):
        raise ConfigError(
            f"train.snapshots: expected false, true, cycles or epochs, found {mode!r}"
        )
    return [SnapshotSaver.from_config(cfg, run_dir, spec=spec, per_epoch=mode == "epochs")]
