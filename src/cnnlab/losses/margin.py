"""Feature-level losses (Handbook §9.1.4, §9.1.5): large-margin softmax and center loss.

Both need more than the logits: the deep feature x that the classifier sees
(``model(x, return_features=True)``) and, for L-Softmax, the classifier's weight. Their builders
therefore return a :class:`~cnnlab.engine.tasks.Task` (what one training step computes) rather
than a ``loss(logits, targets)`` module. The math lives here as plain functions; the tasks
(``cnnlab.engine.tasks``) are imported when a builder runs, so importing ``cnnlab.losses`` does
not import the engine.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from cnnlab.losses._common import as_float, check_choice, check_classes, check_range
from cnnlab.registry import LOSSES


def chebyshev_cos_multiple(cos_theta: torch.Tensor, m: int) -> torch.Tensor:
    """cos(m*theta) from c = cos(theta): the Chebyshev polynomial T_m(c), no acos needed.

    ``cos(m t) = sum_n (-1)^n C(m, 2n) c^(m-2n) (1 - c^2)^n``, n = 0..floor(m/2).
    """
    sin2 = 1.0 - cos_theta * cos_theta
    out = torch.zeros_like(cos_theta)
    for n in range(m // 2 + 1):
        out = out + (-1) ** n * math.comb(m, 2 * n) * cos_theta ** (m - 2 * n) * sin2**n
    return out


def large_margin_psi(cos_theta: torch.Tensor, m: int) -> torch.Tensor:
    """psi(theta) = (-1)^k cos(m theta) - 2k on [k pi/m, (k+1) pi/m], k = 0..m-1 (eq. 9.10).

    psi is monotonically decreasing on [0, pi] and equals cos(m theta) up to theta = pi/m. The
    interval index k counts the thresholds cos(j pi/m), j = 1..m-1, that cos(theta) lies at or
    below (a step function, so it carries no gradient).
    """
    thresholds = [math.cos(j * math.pi / m) for j in range(1, m)]
    k = torch.zeros_like(cos_theta)
    for t in thresholds:
        k = k + (cos_theta.detach() <= t).to(cos_theta.dtype)
    sign = 1.0 - 2.0 * torch.remainder(k, 2.0)  # (-1)^k
    return sign * chebyshev_cos_multiple(cos_theta, m) - 2.0 * k


def large_margin_logits(
    features: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    targets: torch.Tensor,
    m: int,
    lam: float = 0.0,
    eps: float = 1e-12,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(margin logits, plain logits) of L-Softmax (Liu et al. 2016; eq. 9.8) for a linear head.

    Plain logits ``h_j = W_j . x + b_j``. In the margin logits the true class's inner product
    ``|W_y| |x| cos(theta_y)`` becomes ``|W_y| |x| psi(theta_y)``; with annealing weight
    ``lam`` it is ``(lam |W_y||x| cos + |W_y||x| psi) / (1 + lam)`` (the paper's schedule).
    The bias, which the paper does not have, is added unchanged to every class, so m = 1 gives
    exactly the softmax logits. Shapes: features (B, D), weight (C, D), bias (C,), targets (B,).
    """
    inner = features @ weight.t()  # (B, C): W_j . x
    w_norm = weight.norm(dim=1)[targets]  # (B,): |W_y|
    norms = w_norm * features.norm(dim=1)  # (B,): |W_y| |x|
    inner_y = inner.gather(1, targets[:, None]).squeeze(1)
    cos_y = (inner_y / norms.clamp_min(eps)).clamp(-1.0, 1.0)
    target = norms * large_margin_psi(cos_y, m)
    if lam > 0:
        target = (lam * inner_y + target) / (1.0 + lam)
    margin = inner.scatter(1, targets[:, None], target[:, None])
    if bias is not None:
        return margin + bias, inner + bias
    return margin, inner


def center_update_delta(
    centers: torch.Tensor, features: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """Wen et al.'s mini-batch centre step: Delta c_j = sum_i 1[y_i=j](c_j - x_i) / (1 + n_j).

    ``n_j`` is the number of samples of class j in the batch; classes absent from the batch get
    Delta c_j = 0. The update is ``c_j <- c_j - alpha * Delta c_j`` (Handbook E.4 item 42).
    Shapes: centers (C, D), features (B, D), targets (B,).
    """
    counts = torch.bincount(targets, minlength=centers.shape[0]).to(centers.dtype)[:, None]
    sums = torch.zeros_like(centers).index_add_(0, targets, features.to(centers.dtype))
    return (counts * centers - sums) / (1.0 + counts)


@LOSSES.register("l_softmax")
def l_softmax(
    *,
    num_classes: int,
    class_counts: torch.Tensor | None = None,
    m: int = 2,
    lambda_base: float = 0.0,
    lambda_gamma: float = 0.0,
    lambda_power: float = 1.0,
    lambda_min: float = 0.0,
) -> Any:
    """Large-margin softmax (L-Softmax), cos(theta_y) -> psi(m theta_y), margin m=2 (§9.1.4).

    Returns a Task: the loss needs the features (``model(x, return_features=True)``) and a linear
    ``model.head`` (its weight W; its bias is added unchanged to every logit, see
    ``large_margin_logits``).
    m = 1 is softmax cross-entropy exactly. Optional annealing (Liu et al. 2016): at step t the
    true-class logit blends cos and psi with ``lam = max(lambda_min, lambda_base * (1 +
    lambda_gamma * t) ** -lambda_power)``; lambda_base = 0 (default) turns it off. The paper's
    MNIST schedule is lambda_base=1000, lambda_gamma=2.5e-5, lambda_power=35, lambda_min=0.
    """
    from cnnlab.engine.tasks import LargeMarginSoftmaxTask  # engine imports losses, not reverse

    check_classes("l_softmax", num_classes)
    if isinstance(m, bool) or not isinstance(m, int) or m < 1:
        raise ValueError(f"l_softmax: m must be an integer >= 1 (1 = plain softmax), got {m!r}")
    return LargeMarginSoftmaxTask(
        m=m,
        lambda_base=check_range("l_softmax", "lambda_base", lambda_base, 0.0),
        lambda_gamma=check_range("l_softmax", "lambda_gamma", lambda_gamma, 0.0),
        lambda_power=check_range("l_softmax", "lambda_power", lambda_power, 0.0),
        lambda_min=check_range("l_softmax", "lambda_min", lambda_min, 0.0),
    )


@LOSSES.register("center")
def center(
    *,
    num_classes: int,
    class_counts: torch.Tensor | None = None,
    lam: float = 0.01,
    alpha: float = 0.5,
    feat_dim: int | None = None,
    reduction: str = "mean",
) -> Any:
    """Center loss: CE + lam/2 * ||x_i - c_{y_i}||^2 on the deep features, lam=0.01, alpha=0.5.

    Wen et al. 2016 (Handbook §9.1.5, eqs. 9.11-9.13). Returns a Task that uses the features
    from ``model(x, return_features=True)`` (the vector fed into the classifier, not the
    logits). The class centres are a buffer (zeros at start, saved with the task), updated
    after each optimiser step by ``c_j <- c_j - alpha * Delta c_j`` (E.4 item 42).
    reduction: "mean" (default: the centre term averaged over the batch, as in Wen et al.'s
    code, so lam does not depend on the batch size) or "sum" (the handbook's eq. 9.13).
    feat_dim: the feature width D; None = taken from the first batch.
    """
    from cnnlab.engine.tasks import CenterLossTask  # engine imports losses, not reverse

    check_classes("center", num_classes)
    if feat_dim is not None and (
        isinstance(feat_dim, bool) or not isinstance(feat_dim, int) or feat_dim < 1
    ):
        raise ValueError(f"center: feat_dim must be a positive integer or None, got {feat_dim!r}")
    return CenterLossTask(
        num_classes=num_classes,
        lam=check_range("center", "lam", lam, 0.0),
        alpha=check_range("center", "alpha", alpha, 0.0, 1.0),
        feat_dim=feat_dim,
        reduction=check_choice("center", "reduction", reduction, ("mean", "sum")),
    )


def center_loss_value(
    features: torch.Tensor, centers: torch.Tensor, targets: torch.Tensor, reduction: str
) -> torch.Tensor:
    """1/2 sum_i ||x_i - c_{y_i}||^2 (eq. 9.11), or its batch mean (``reduction="mean"``)."""
    per_sample = 0.5 * (features - centers[targets]).pow(2).sum(dim=1)
    return per_sample.mean() if reduction == "mean" else per_sample.sum()


def softmax_ce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean softmax cross-entropy in fp32 (logits may be bf16 under autocast)."""
    return F.cross_entropy(as_float(logits), targets)
