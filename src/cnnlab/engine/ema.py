"""Exponential moving average of the weights, as a callback (torch's ``AveragedModel``).

Polyak & Juditsky 1992 / the EMA of timm, Keras, Lightning and torchvision: after every
``every`` optimiser steps ``w_ema <- d * w_ema + (1 - d) * w`` (the first update copies w).
With ``warmup`` the decay starts low and grows, ``d_n = min(decay, (1 + n) / (10 + n))`` for the
n-th update (TensorFlow's ``ExponentialMovingAverage(num_updates=...)``), so a short run's
average is not dominated by the random initial weights.

Batch-norm running statistics (``bn``): ``"average"`` (default) averages them with the weights
(``use_buffers=True``); ``"copy"`` averages only the parameters and copies the live model's
buffers at each update. The fast recipes use the default.

When the callback is on, per-epoch evaluation uses the averaged model (``eval_model``); the
run directory saves ``state_dict()`` with the checkpoint and loads ``module``'s weights as the
run's final model.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from cnnlab.engine.callbacks import Callback
from cnnlab.engine.state import TrainState

BN_MODES = ("average", "copy")


class EMA(Callback):
    """Keeps ``module``, the exponential moving average of ``model``'s weights."""

    def __init__(
        self,
        model: nn.Module | None = None,
        *,
        decay: float = 0.99,
        every: int = 1,
        warmup: bool = True,
        bn: str = "average",
    ) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay!r}")
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"EMA every must be an integer >= 1, got {every!r}")
        if bn not in BN_MODES:
            raise ValueError(f"EMA bn must be one of {', '.join(BN_MODES)}, got {bn!r}")
        self.decay, self.every, self.warmup, self.bn = decay, every, warmup, bn
        self.source: nn.Module | None = None
        self.averaged: AveragedModel | None = None
        if model is not None:
            self.bind(model)

    def bind(self, model: nn.Module) -> None:
        """Start averaging ``model`` (done at ``on_fit_start`` if no model was given)."""
        self.source = _unwrap(model)
        self.averaged = AveragedModel(
            self.source, multi_avg_fn=self._average, use_buffers=self.bn == "average"
        )

    def _bound(self) -> AveragedModel:
        if self.averaged is None:
            raise RuntimeError("EMA: no model yet; pass one to EMA(model) or call bind(model)")
        return self.averaged

    @property
    def module(self) -> nn.Module:
        """The averaged network (same class and state_dict keys as the model)."""
        return self._bound().module

    @property
    def updates(self) -> int:
        return int(self.averaged.n_averaged) if self.averaged is not None else 0

    def decay_at(self, n: int) -> float:
        """The decay of the update after ``n`` earlier ones (n >= 1; the first one copies)."""
        return min(self.decay, (1 + n) / (10 + n)) if self.warmup else self.decay

    def _average(self, ema: list[torch.Tensor], current: list[torch.Tensor], n: Any) -> None:
        # torch's own EMA step, with this update's (warmed-up) decay
        get_ema_multi_avg_fn(self.decay_at(int(n)))(ema, current, n)

    @torch.no_grad()
    def update(self) -> None:
        """Fold the live weights into the average now."""
        averaged = self._bound()
        averaged.update_parameters(self.source)
        if self.bn == "copy":
            for mine, live in zip(self.module.buffers(), self.source.buffers(), strict=True):
                mine.copy_(live)

    def on_fit_start(self, trainer: Any, state: TrainState) -> None:
        if self.averaged is None:
            self.bind(trainer.model)

    def on_step_end(self, trainer: Any, state: TrainState) -> None:
        if state.step % self.every == 0:
            self.update()

    def eval_model(self, trainer: Any, model: nn.Module) -> nn.Module | None:
        return self.module if self.updates > 0 else None

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged weights and buffers (``module.*``) and the update count (tensors only)."""
        return self._bound().state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self._bound().load_state_dict(state)


def _unwrap(model: nn.Module) -> nn.Module:
    """The network inside a DistributedDataParallel wrapper (the average skips the wrapper)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
