"""Early stopping on a validation split, with the best epoch's weights restored (§10.5)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from cnnlab.engine.callbacks import Callback
from cnnlab.engine.state import TrainState


class EarlyStopping(Callback):
    """Watch ``metric`` after each evaluated epoch; stop after ``patience`` epochs without an
    improvement larger than ``min_delta``; keep the best weights (in memory, and through
    ``save_best`` on disk so a resumed run still knows them)."""

    def __init__(
        self,
        model: nn.Module,
        *,
        metric: str = "val_loss",
        patience: int = 5,
        min_delta: float = 0.0,
        save_best: Callable[[dict[str, torch.Tensor]], None] | None = None,
    ) -> None:
        self.model, self.metric, self.patience, self.min_delta = model, metric, patience, min_delta
        self.mode = "min" if metric.endswith("loss") else "max"
        self.save_best = save_best
        self.best_state: dict[str, torch.Tensor] | None = None

    def improved(self, value: float, best: float | None) -> bool:
        if best is None:
            return True
        if self.mode == "min":
            return value < best - self.min_delta
        return value > best + self.min_delta

    def on_epoch_end(self, trainer: Any, state: TrainState, row: dict[str, float]) -> None:
        if self.metric not in row:
            return  # not an evaluation epoch
        value = float(row[self.metric])
        if self.improved(value, state.best_metric):
            state.best_metric, state.best_epoch, state.bad_epochs = value, state.epoch, 0
            self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            if self.save_best is not None:
                self.save_best(self.best_state)
            return
        state.bad_epochs += 1
        if state.bad_epochs >= self.patience:
            state.should_stop = True
            state.stop_reason = (
                f"early stopping: {self.metric} did not improve for {self.patience} epochs "
                f"(best {state.best_metric:.4f} at epoch {state.best_epoch})"
            )

    def restore(self) -> bool:
        """Load the best weights into the model; False if there are none."""
        if self.best_state is None:
            return False
        self.model.load_state_dict(self.best_state)
        return True
