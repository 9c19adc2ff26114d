"""The trainer's state: where the run is, what it has measured, and stop signals."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class TrainState:
    """Mutable progress of one run; everything here is saved in checkpoints (JSON)."""

    epoch: int = 0  # completed epochs
    step: int = 0  # completed optimiser steps over the whole run
    epoch_step: int = 0  # completed steps within the current (unfinished) epoch
    # Running sums of the unfinished epoch, so a mid-epoch resume reports the same metrics.
    epoch_loss_sum: float = 0.0
    epoch_correct: int = 0
    epoch_seen: int = 0
    epoch_seconds: float = 0.0
    train_seconds: float = 0.0  # training-loop time of all epochs (evaluation excluded)
    history: list[dict[str, float]] = field(default_factory=list)
    should_stop: bool = False
    stop_reason: str | None = None
    # Early stopping (handbook §10.5): the best validation value so far and when it happened.
    best_metric: float | None = None
    best_epoch: int | None = None
    bad_epochs: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainState:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def reset_epoch(self) -> None:
        self.epoch_step = 0
        self.epoch_loss_sum = 0.0
        self.epoch_correct = 0
        self.epoch_seen = 0
        self.epoch_seconds = 0.0
