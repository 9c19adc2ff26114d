"""Classification losses on logits (Handbook §9.1.1-§9.1.3, §9.3): CE, hinge, ramp, KL.

Every builder follows ``builder(*, num_classes, class_counts=None, **options) -> nn.Module`` whose
forward takes ``(logits (B, C), targets (B,))`` and returns a scalar (mean over the batch).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnlab.losses._common import (
    as_float,
    check_choice,
    check_classes,
    check_range,
    target_distribution,
)
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


HINGE_FORMS = ("weston_watkins", "crammer_singer", "book")


def margin_score(logits: torch.Tensor, targets: torch.Tensor, form: str) -> torch.Tensor:
    """Per-sample score z the margin losses compare with 1: h_y - max_{j!=y} h_j, or h_y.

    ``form="crammer_singer"`` gives the gap to the best wrong class; ``"book"`` the true-class
    score alone, as printed in eq. 9.2 (Handbook E.4 item 39).
    """
    h_y = logits.gather(1, targets[:, None]).squeeze(1)  # (B,)
    if form == "book":
        return h_y
    wrong = logits.masked_fill(F.one_hot(targets, logits.shape[1]).bool(), float("-inf"))
    return h_y - wrong.amax(dim=1)


class MulticlassHinge(nn.Module):
    """Multi-class hinge loss, mean over the batch (see :func:`multiclass_hinge`)."""

    def __init__(self, margin: float = 1.0, form: str = "weston_watkins") -> None:
        super().__init__()
        self.margin, self.form = margin, form

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        h = as_float(logits)
        if self.form != "weston_watkins":
            return (self.margin - margin_score(h, targets, self.form)).clamp_min(0).mean()
        h_y = h.gather(1, targets[:, None])  # (B, 1)
        viol = (self.margin + h - h_y).clamp_min(0)  # (B, C); the j = y entry is excluded below
        viol = viol.masked_fill(F.one_hot(targets, h.shape[1]).bool(), 0.0)
        return viol.sum(dim=1).mean()

    def extra_repr(self) -> str:
        return f"margin={self.margin}, form={self.form!r}"


@LOSSES.register("multiclass_hinge")
def multiclass_hinge(
    *,
    num_classes: int,
    class_counts: torch.Tensor | None = None,
    margin: float = 1.0,
    form: str = "weston_watkins",
) -> nn.Module:
    """Multi-class hinge, sum_{j!=y} max(0, 1 + h_j - h_y) (Weston-Watkins; §9.1.2, margin 1).

    form: "weston_watkins" (default, the "SVM loss"), "crammer_singer"
    ``max(0, margin + max_{j!=y} h_j - h_y)``, or "book", the handbook's eq. 9.2
    ``max(0, margin - h_y)``, which looks at the true class only (Handbook E.4 item 39).
    """
    check_classes("multiclass_hinge", num_classes)
    margin = check_range("multiclass_hinge", "margin", margin, 0.0, low_open=True)
    return MulticlassHinge(margin, check_choice("multiclass_hinge", "form", form, HINGE_FORMS))


class RampLoss(nn.Module):
    """Ramp (truncated hinge) loss, mean over the batch (see :func:`ramp`)."""

    def __init__(self, s: float, form: str = "crammer_singer") -> None:
        super().__init__()
        self.s, self.form = s, form

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        z = margin_score(as_float(logits), targets, self.form)
        # max(0, 1 - z) - max(0, s - z) == clamp(1 - z, 0, 1 - s) for s < 1 (eq. 9.4).
        return (1.0 - z).clamp(0.0, 1.0 - self.s).mean()

    def extra_repr(self) -> str:
        return f"s={self.s:.4g}, form={self.form!r}"


@LOSSES.register("ramp")
def ramp(
    *,
    num_classes: int,
    class_counts: torch.Tensor | None = None,
    s: float | None = None,
    form: str = "crammer_singer",
) -> nn.Module:
    """Ramp loss, hinge truncated at s: min(1 - s, max(0, 1 - z)), s = -1/(C-1) (§9.1.3).

    Per sample ``max(0, 1 - z) - max(0, s - z)`` (Collobert et al. 2006), capped at 1 - s, so a
    grossly misclassified (e.g. mislabelled) sample costs no more than 1 - s and gives no
    gradient. z = h_y - max_{j!=y} h_j (form "crammer_singer", default: the multi-class margin)
    or z = h_y (form "book", eq. 9.4 as printed). s defaults to -1/(C-1) (Wu & Liu 2007), e.g.
    -0.5 for C = 3, the handbook's figure.
    """
    check_classes("ramp", num_classes)
    if s is None:
        s = -1.0 / (num_classes - 1)
    s = check_range("ramp", "s", s, None, 1.0, high_open=True)
    return RampLoss(s, check_choice("ramp", "form", form, ("crammer_singer", "book")))


def gaussian_label_distribution(num_classes: int, sigma: float) -> torch.Tensor:
    """(C, C) table whose row y is a Gaussian over class indices, mean y, std sigma, sum 1 (§9.3).

    The density is evaluated at the integer class indices 0..C-1 and renormalised over them
    (ordinal labels such as age bins; sigma is in class-index units, Handbook E.4 item 45).
    """
    k = torch.arange(num_classes, dtype=torch.float64)
    logits = -((k[None, :] - k[:, None]) ** 2) / (2.0 * sigma**2)  # (C, C): row y, column k
    return torch.softmax(logits, dim=1).float()


def smoothed_label_distribution(num_classes: int, smoothing: float) -> torch.Tensor:
    """(C, C) table: (1 - eps) * one-hot(y) + eps / C (label smoothing as a distribution)."""
    eye = torch.eye(num_classes, dtype=torch.float64)
    return ((1.0 - smoothing) * eye + smoothing / num_classes).float()


class LabelDistributionKL(nn.Module):
    """KL(q || softmax(h)) with q = table[y], or q given as (B, C) targets (see below)."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("table", table, persistent=False)  # rebuilt from the options

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if targets.dim() == 2:
            q = target_distribution(targets, logits.shape[1])
        else:
            q = self.table[targets]  # (B, C)
        log_p = F.log_softmax(as_float(logits), dim=1)
        # sum_k q_k log(q_k / p_k); xlogy makes 0 * log 0 = 0 for classes with q_k = 0.
        return (torch.xlogy(q, q) - q * log_p).sum(dim=1).mean()


@LOSSES.register("kl_label_distribution")
def kl_label_distribution(
    *,
    num_classes: int,
    class_counts: torch.Tensor | None = None,
    target: str = "gaussian",
    sigma: float = 1.0,
    smoothing: float = 0.1,
) -> nn.Module:
    """KL(q || softmax(h)) to a label distribution q: Gaussian over classes, sigma=1 (§9.3).

    ``KL = sum_k q_k log(q_k / p_k)`` (eq. 9.19) equals the soft-target cross-entropy
    ``-sum_k q_k log p_k`` (eq. 9.20) minus the entropy H(q), a constant. target: "gaussian"
    (default: q is a discretised Gaussian over class indices centred on y with std ``sigma``,
    for ordinal labels such as age) or "smoothing" (q = (1 - smoothing) one-hot + smoothing/C).
    (B, C) float targets are used as q directly (given label distributions).
    """
    check_classes("kl_label_distribution", num_classes)
    target = check_choice("kl_label_distribution", "target", target, ("gaussian", "smoothing"))
    sigma = check_range("kl_label_distribution", "sigma", sigma, 0.0, low_open=True)
    smoothing = check_range(
        "kl_label_distribution", "smoothing", smoothing, 0.0, 1.0, high_open=True
    )
    if target == "gaussian":
        return LabelDistributionKL(gaussian_label_distribution(num_classes, sigma))
    return LabelDistributionKL(smoothed_label_distribution(num_classes, smoothing))
