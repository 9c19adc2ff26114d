"""Classification metrics as pure tensor functions (handbook §10.5, §12.2.2)."""

from __future__ import annotations

import torch


def accuracy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Top-1 accuracy of ``logits (N, C)`` against ``targets (N,)``."""
    return (logits.argmax(dim=1) == targets).float().mean().item()


def confusion_index(preds: torch.Tensor, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Each sample's cell of the flattened (C * C) confusion matrix: ``target * C + pred``."""
    return targets.to(torch.int64) * num_classes + preds.to(torch.int64)


def confusion_matrix(preds: torch.Tensor, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``cm[i, j]`` = number of samples of true class i predicted as class j."""
    idx = confusion_index(preds, targets, num_classes)
    return torch.bincount(idx, minlength=num_classes**2).reshape(num_classes, num_classes)


def per_class_report(cm: torch.Tensor) -> dict[str, list[float]]:
    """Per-class precision, recall and F1 from a confusion matrix (0 where undefined)."""
    cm = cm.to(torch.float64)
    tp = cm.diag()
    predicted, actual = cm.sum(dim=0), cm.sum(dim=1)
    precision = torch.where(predicted > 0, tp / predicted.clamp_min(1), torch.zeros_like(tp))
    recall = torch.where(actual > 0, tp / actual.clamp_min(1), torch.zeros_like(tp))
    denom = precision + recall
    f1 = torch.where(
        denom > 0, 2 * precision * recall / denom.clamp_min(1e-12), torch.zeros_like(tp)
    )
    return {"precision": precision.tolist(), "recall": recall.tolist(), "f1": f1.tolist()}


def balanced_accuracy(cm: torch.Tensor) -> float:
    """Mean per-class recall over the classes present in the targets."""
    cm = cm.to(torch.float64)
    actual = cm.sum(dim=1)
    present = actual > 0
    return (cm.diag()[present] / actual[present]).mean().item() if present.any() else 0.0
