"""Evaluate a classifier on a batch loader: loss, accuracy, confusion matrix, predictions."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnlab.evaluation.metrics import balanced_accuracy, confusion_index, per_class_report


@dataclass
class EvalResult:
    loss: float
    accuracy: float
    num_samples: int
    confusion: torch.Tensor  # (C, C) int64, rows = true class
    seconds: float
    probs: torch.Tensor | None = None  # (N, C) float32, when keep_outputs
    targets: torch.Tensor | None = None  # (N,)
    extra: dict = field(default_factory=dict)

    @property
    def images_per_second(self) -> float:
        return self.num_samples / self.seconds if self.seconds > 0 else float("nan")

    def metrics(self, prefix: str = "") -> dict[str, float]:
        return {f"{prefix}loss": self.loss, f"{prefix}acc": self.accuracy}

    def report(self) -> dict:
        """JSON-able summary including per-class figures."""
        return {
            "loss": self.loss,
            "acc": self.accuracy,
            "balanced_acc": balanced_accuracy(self.confusion),
            "num_samples": self.num_samples,
            "images_per_s": self.images_per_second,
            "confusion": self.confusion.tolist(),
            **per_class_report(self.confusion),
        }


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    num_classes: int,
    autocast: Callable[[], object] | None = None,
    keep_outputs: bool = False,
) -> EvalResult:
    """Run ``model`` in eval mode over ``batches``; mean cross-entropy and top-1 accuracy.

    Sums, confusion counts and kept outputs stay on the batches' device until the last batch
    is done, then come back in one read: a read per batch would make the host wait for a GPU
    after every batch (issue 23). ``seconds`` includes that final wait."""
    was_training = model.training
    model.eval()
    loss_sum: torch.Tensor | None = None  # float64, on the device
    cm: torch.Tensor | None = None  # (C * C,) int64 counts, on the device
    n = 0
    kept_probs, kept_targets = [], []
    start = time.perf_counter()
    for x, y in batches:
        with autocast() if autocast is not None else contextlib.nullcontext():
            logits = model(x)
        logits = logits.float()
        if loss_sum is None:
            loss_sum = torch.zeros((), dtype=torch.float64, device=logits.device)
            cm = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=logits.device)
        loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
        preds = logits.argmax(dim=1)
        ones = torch.ones(y.numel(), dtype=torch.int64, device=cm.device)
        cm.index_add_(0, confusion_index(preds, y, num_classes), ones)
        n += y.numel()
        if keep_outputs:
            kept_probs.append(logits.softmax(dim=1))
            kept_targets.append(y)
    model.train(was_training)
    if n == 0:
        raise ValueError("evaluate: no samples")
    confusion = cm.view(num_classes, num_classes).cpu()
    loss = (loss_sum / n).item()
    probs = torch.cat(kept_probs).cpu() if keep_outputs else None
    targets = torch.cat(kept_targets).cpu() if keep_outputs else None
    seconds = time.perf_counter() - start  # after the reads: the device's work is done
    return EvalResult(
        loss=loss,
        accuracy=int(confusion.diagonal().sum()) / n,
        num_samples=n,
        confusion=confusion,
        seconds=seconds,
        probs=probs,
        targets=targets,
    )
