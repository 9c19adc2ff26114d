"""Explicit penalties and constraints on the weights (handbook ch. 10).

l2 as weight decay is the optimiser's job (``optim.weight_decay``, §10.1). Here: l1 and l2
terms added to the loss (§10.1-10.2; both together make the elastic net), and the max-norm
constraint (§10.3), which projects every unit's incoming weight vector back into the ball of
radius c after each step: w <- w * min(1, c / ||w||_2) (Srivastava et al. 2014; the book's
"10^3 or 10^4" is read as c = 3 or 4, Part E item 47).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cnnlab.engine.callbacks import Callback
from cnnlab.engine.tasks import Task

_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def penalized_weights(model: nn.Module) -> list[torch.Tensor]:
    """The conv and linear weights (biases and norm layers are not regularised)."""
    return [m.weight for m in model.modules() if isinstance(m, _WEIGHTED)]


class PenalizedTask(Task):
    """Adds lambda_1 * sum|w| + lambda_2/2 * sum w^2 to another task's loss."""

    def __init__(self, inner: Task, l1: float = 0.0, l2: float = 0.0) -> None:
        super().__init__()
        self.inner, self.l1, self.l2 = inner, l1, l2

    def training_step(self, model, x, y):
        loss, logits = self.inner.training_step(model, x, y)
        weights = penalized_weights(model)
        if self.l1:
            loss = loss + self.l1 * sum(w.abs().sum() for w in weights)
        if self.l2:
            loss = loss + 0.5 * self.l2 * sum(w.pow(2).sum() for w in weights)
        return loss, logits

    def after_step(self) -> None:
        self.inner.after_step()


@torch.no_grad()
def apply_max_norm(model: nn.Module, c: float) -> None:
    """Clip each output unit's incoming weight vector (row of W) to l2 norm <= c."""
    for w in penalized_weights(model):
        norms = w.flatten(1).norm(dim=1).clamp_min(1e-12)  # (out,) one norm per unit
        scale = (c / norms).clamp(max=1.0)
        w.mul_(scale.view(-1, *([1] * (w.dim() - 1))))


class MaxNorm(Callback):
    """Apply the max-norm projection after every optimiser step."""

    def __init__(self, c: float) -> None:
        self.c = c

    def on_step_end(self, trainer: Any, state: Any) -> None:
        apply_max_norm(getattr(trainer.model, "module", trainer.model), self.c)
