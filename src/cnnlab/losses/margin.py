"""Feature-level losses (Handbook §9.1.4, §9.1.5): large-margin softmax and center loss, the math.

Both need more than the logits: the deep feature x that the classifier sees
(``model(x, return_features=True)``) and, for L-Softmax, the classifier's weight. The formulas
live here as plain functions; the tasks that compute a training step with them, and the
registered builders ``l_softmax`` and ``center``, are in :mod:`cnnlab.losses.margin_tasks`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from cnnlab.losses._common import as_float


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


def center_loss_value(
    features: torch.Tensor, centers: torch.Tensor, targets: torch.Tensor, reduction: str
) -> torch.Tensor:
    """1/2 sum_i ||x_i - c_{y_i}||^2 (eq. 9.11), or its batch mean (``reduction="mean"``)."""
    per_sample = 0.5 * (features - centers[targets]).pow(2).sum(dim=1)
    return per_sample.mean() if reduction == "mean" else per_sample.sum()


def softmax_ce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean softmax cross-entropy in fp32 (logits may be bf16 under autocast)."""
    return F.cross_entropy(as_float(logits), targets)
