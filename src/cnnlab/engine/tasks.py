"""Tasks: what one training step computes, so the loop itself never changes (docs/architecture.md).

A task turns a batch into ``(loss, logits)``. Plain classification applies a loss to the model's
logits; L-Softmax and center loss (Handbook §9.1.4-§9.1.5) need the deep features and the linear
head, and center loss also updates its class centres after each optimiser step. ``build_task``
makes the right task for any registered loss name; the tasks themselves live with the losses
(``cnnlab.losses.task``, ``cnnlab.losses.margin_tasks``) and are re-exported here.
"""

from __future__ import annotations

from typing import Any

import torch

from cnnlab.losses import LOSSES
from cnnlab.losses.margin_tasks import CenterLossTask, LargeMarginSoftmaxTask
from cnnlab.losses.task import ClassificationTask, Task, unwrap

__all__ = [
    "CenterLossTask",
    "ClassificationTask",
    "LargeMarginSoftmaxTask",
    "Task",
    "build_task",
    "unwrap",
]


def build_task(
    name: str,
    *,
    num_classes: int,
    class_counts: torch.Tensor | None = None,
    **options: Any,
) -> Task:
    """The Task for loss ``name``: its builder's Task, or a loss module in ClassificationTask.

    ``options`` are the loss's own options (checked against its builder's signature).
    """
    built = LOSSES.build(name, num_classes=num_classes, class_counts=class_counts, **options)
    return built if isinstance(built, Task) else ClassificationTask(built)
