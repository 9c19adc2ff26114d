"""Classification losses (handbook chapter 9), registered by name.

Loss builder contract: ``builder(*, num_classes, class_counts=None, **options) -> nn.Module``
whose forward takes ``(logits (B, C), targets (B,))`` and returns a scalar.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnlab.registry import LOSSES


def class_weights_from(
    spec: str | Sequence[float] | None, num_classes: int, class_counts: torch.Tensor | None
) -> torch.Tensor | None:
    """Per-class weights: ``None``, an explicit list, or ``"balanced"`` (handbook §12.2.2).

    ``"balanced"`` weights class j by N / (C * n_j), so every class contributes equally to
    the expected loss whatever its frequency.
    """
    if spec is None:
        return None
    if isinstance(spec, str):
        if spec != "balanced":
            raise ValueError(f"class_weights: expected 'balanced' or a list, found {spec!r}")
        if class_counts is None:
            return None  # resolved later, when the data's class counts are known
        counts = class_counts.to(torch.float64).clamp_min(1)
        return (counts.sum() / (num_classes * counts)).to(torch.float32)
    weights = torch.as_tensor(list(spec), dtype=torch.float32)
    if weights.shape != (num_classes,):
        raise ValueError(
            f"class_weights: expected {num_classes} values (one per class), found {weights.numel()}"
        )
    if (weights < 0).any():
        raise ValueError("class_weights: weights must be >= 0")
    return weights


class CrossEntropy(nn.Module):
    """Softmax cross-entropy (handbook §9.1.1) with optional label smoothing and class weights."""

    def __init__(self, label_smoothing: float = 0.0, weight: torch.Tensor | None = None) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing
        self.register_buffer("weight", weight, persistent=False)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        # float(): under bf16 autocast the logits are bf16; the loss is summed in fp32.
        return F.cross_entropy(
            logits.float(), targets, weight=self.weight, label_smoothing=self.label_smoothing
        )


@LOSSES.register("cross_entropy")
def cross_entropy(
    *,
    num_classes: int,
    class_counts: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
    class_weights: str | list[float] | None = None,
) -> nn.Module:
    """Softmax cross-entropy, -log p_y (§9.1.1); options: label_smoothing, class_weights."""
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing: expected a value in [0, 1), found {label_smoothing}")
    weight = class_weights_from(class_weights, num_classes, class_counts)
    return CrossEntropy(label_smoothing, weight)
