"""Regression losses applied to classification (Handbook §9.2): l1, l2, Tukey's biweight.

For a classifier the prediction is the softmax probability vector p = softmax(h) and the target
the one-hot vector of the label (or a given (B, C) distribution), so the residual is
``r = p - t`` with entries in [-1, 1] (eq. 9.14 with y_hat = p). Reduction "mean" is the
handbook's: sum over the C dimensions, mean over the N samples (eqs. 9.15-9.17).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from cnnlab.losses._common import (
    as_float,
    check_choice,
    check_classes,
    check_range,
    target_distribution,
)
from cnnlab.registry import LOSSES

REDUCTIONS = ("mean", "sum")
#: 1.4826 * MAD estimates the standard deviation of normally distributed residuals.
MAD_TO_STD = 1.4826
TUKEY_C = 4.6851


def probability_residual(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(B, C) residual softmax(h) - t, t the one-hot target (or the given distribution)."""
    probs = torch.softmax(as_float(logits), dim=1)
    return probs - target_distribution(targets, logits.shape[1])


def _reduce(per_sample: torch.Tensor, reduction: str) -> torch.Tensor:
    return per_sample.mean() if reduction == "mean" else per_sample.sum()


class ProbabilityL1(nn.Module):
    """sum_t |p_t - t_t| per sample (eq. 9.15), then mean or sum over the batch."""

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = reduction

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        r = probability_residual(logits, targets)
        return _reduce(r.abs().sum(dim=1), self.reduction)


class ProbabilityL2(nn.Module):
    """sum_t (p_t - t_t)^2 per sample (eq. 9.16; times 1/2 with ``half``), mean or sum."""

    def __init__(self, half: bool = False, reduction: str = "mean") -> None:
        super().__init__()
        self.half, self.reduction = half, reduction

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        r = probability_residual(logits, targets)
        per_sample = r.pow(2).sum(dim=1) * (0.5 if self.half else 1.0)
        return _reduce(per_sample, self.reduction)


@LOSSES.register("l1")
def l1(
    *, num_classes: int, class_counts: torch.Tensor | None = None, reduction: str = "mean"
) -> nn.Module:
    """l1 loss on softmax probabilities vs one-hot, sum_t |p_t - y_t|, mean over samples (§9.2.1).

    reduction: "mean" (default; eq. 9.15: sum over classes, mean over samples) or "sum".
    """
    check_classes("l1", num_classes)
    return ProbabilityL1(check_choice("l1", "reduction", reduction, REDUCTIONS))


@LOSSES.register("l2")
def l2(
    *,
    num_classes: int,
    class_counts: torch.Tensor | None = None,
    half: bool = False,
    reduction: str = "mean",
) -> nn.Module:
    """l2 loss on softmax probabilities vs one-hot, sum_t (p_t - y_t)^2, no 1/2 (§9.2.2).

    half=False (default) follows eq. 9.16 (no 1/2); half=True gives the 1/2 ||.||^2 of §1.2
    (Handbook E.4 item 43). reduction: "mean" (sum over classes, mean over samples) or "sum".
    """
    check_classes("l2", num_classes)
    return ProbabilityL2(bool(half), check_choice("l2", "reduction", reduction, REDUCTIONS))


def tukey_biweight(r: torch.Tensor, c: float = TUKEY_C) -> torch.Tensor:
    """Elementwise rho_c(r) = c^2/6 [1 - (1 - (r/c)^2)^3] for |r| <= c, else c^2/6 (eq. 9.17).

    Clamping r/c to [-1, 1] gives the constant branch beyond c with zero gradient there, so
    outliers stop pulling on the model (Handbook E.4 item 44, per-residual reconstruction).
    """
    u = (r / c).clamp(-1.0, 1.0)
    return (c * c / 6.0) * (1.0 - (1.0 - u * u) ** 3)


def mad_scale(r: torch.Tensor, min_scale: float) -> torch.Tensor:
    """1.4826 * median |r - median(r)| over all entries, at least ``min_scale`` (no gradient)."""
    flat = r.detach().flatten()
    mad = (flat - flat.median()).abs().median()
    return (MAD_TO_STD * mad).clamp_min(min_scale)


class TukeyBiweight(nn.Module):
    """(1/N) sum_i sum_t rho_c(r_it / s) with r = p - t and s = 1 or the MAD scale."""

    def __init__(self, c: float = TUKEY_C, use_mad: bool = False, min_scale: float = 0.1) -> None:
        super().__init__()
        self.c, self.use_mad, self.min_scale = c, use_mad, min_scale

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        r = probability_residual(logits, targets)
        if self.use_mad:
            r = r / mad_scale(r, self.min_scale)
        return tukey_biweight(r, self.c).sum(dim=1).mean()

    def extra_repr(self) -> str:
        return f"c={self.c}, mad_scale={self.use_mad}, min_scale={self.min_scale}"


@LOSSES.register("tukey")
def tukey(
    *,
    num_classes: int,
    class_counts: torch.Tensor | None = None,
    c: float = TUKEY_C,
    mad_scale: bool = False,
    min_scale: float = 0.1,
) -> nn.Module:
    """Tukey's biweight on residuals softmax(h) - onehot(y), robust, c=4.6851 (§9.2.3).

    Per residual ``rho_c(r) = c^2/6 [1 - (1 - (r/c)^2)^3]`` for |r| <= c and c^2/6 beyond
    (Belagiannis et al. 2015), summed over classes, mean over samples. Probability residuals lie
    in [-1, 1], so with the default c = 4.6851 and no scaling the flat (robust) part is never
    reached and the loss behaves like 1/2 l2. ``mad_scale=True`` (Belagiannis et al.) divides the
    residuals by s = max(1.4826 * MAD, min_scale), MAD = the batch's median absolute deviation
    (held constant in the gradient): residuals beyond c * s then saturate with zero gradient,
    e.g. those of confidently "wrong" (possibly mislabelled) samples. min_scale (default 0.1)
    stops s from collapsing while the outputs are still nearly identical (early training).
    Alternatively choose c < 1 to saturate in probability units directly.
    """
    check_classes("tukey", num_classes)
    c = check_range("tukey", "c", c, 0.0, low_open=True)
    min_scale = check_range("tukey", "min_scale", min_scale, 0.0, low_open=True)
    return TukeyBiweight(c, bool(mad_scale), min_scale)
