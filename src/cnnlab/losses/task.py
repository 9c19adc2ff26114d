"""Tasks: what one training step computes, so the loop itself never changes.

A task turns a batch into ``(loss, logits)``; plain classification applies a loss to the model's
logits. Losses that need more (the deep features, the linear head, a centre update after the
step: ``cnnlab.losses.margin_tasks``) are tasks themselves. They live with the losses (floor
``losses``) so that a loss builder can return one without importing the engine.
"""

from __future__ import annotations

import torch
import torch.nn as nn


class Task(nn.Module):
    """Base task. Subclasses may own parameters/buffers (saved with the checkpoint)."""

    def training_step(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def after_step(self) -> None:
        """Hook run after the optimiser step (e.g. a non-gradient centre update)."""


class ClassificationTask(Task):
    """loss(model(x), y) with any registered classification loss."""

    def __init__(self, loss: nn.Module) -> None:
        super().__init__()
        self.loss = loss

    def training_step(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        logits = model(x)
        return self.loss(logits, y), logits


def unwrap(model: nn.Module) -> nn.Module:
    """The network inside a (Distributed)DataParallel wrapper, else ``model`` itself."""
    wrappers = (nn.parallel.DistributedDataParallel, nn.DataParallel)
    return model.module if isinstance(model, wrappers) else model
