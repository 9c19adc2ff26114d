"""Tasks: what one training step computes, so the loop itself never changes (DESIGN.md).

A task turns a batch into ``(loss, logits)``. Plain classification applies a loss to the model's
logits; later tasks (mixup, distillation, center loss with its centre update) plug in here.
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
