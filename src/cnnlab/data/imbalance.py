"""Imbalanced data: build imbalanced subsets, class weights and cost matrices (handbook Ch. 12).

``make_imbalanced`` carves an imbalanced training set out of a balanced one (for the §12
experiments). The cost-sensitive helpers follow §12.2.2: a cost matrix C (rows = true class,
columns = predicted class, zero diagonal) from class counts (eqs. 12.2, 12.3) or from a
validation confusion matrix (eqs. 12.4, 12.5), and per-class cross-entropy weights.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from fractions import Fraction
from typing import Any

import torch

__all__ = [
    "class_weights_from_confusion",
    "class_weights_from_cost_matrix",
    "class_weights_from_counts",
    "cost_matrix_from_confusion",
    "cost_matrix_from_counts",
    "imbalance_fractions",
    "make_imbalanced",
    "make_imbalanced_dataset",
]

PROFILES = ("long_tail", "step")


def imbalance_fractions(num_classes: int, profile: str, imbalance: float) -> torch.Tensor:
    """Share of each class to keep, float64 (K,), largest first; max/min = ``imbalance``.

    ``long_tail``: exponential decay, class k keeps imbalance^(-k/(K-1)) (Cui et al. 2019).
    ``step``: the first ceil(K/2) classes keep everything, the rest 1/imbalance (Buda et al.).
    """
    if profile not in PROFILES:
        raise ValueError(
            f"make_imbalanced: profile must be one of {', '.join(PROFILES)}, got {profile!r}"
        )
    if not (isinstance(imbalance, (int, float)) and imbalance >= 1):
        raise ValueError(f"make_imbalanced: imbalance must be a number >= 1, got {imbalance!r}")
    if num_classes < 2:
        raise ValueError(f"make_imbalanced: needs at least 2 classes, got {num_classes}")
    k = torch.arange(num_classes, dtype=torch.float64)
    if profile == "long_tail":
        return float(imbalance) ** (-k / (num_classes - 1))
    minority = torch.full_like(k, 1.0 / float(imbalance))
    return torch.where(k < math.ceil(num_classes / 2), torch.ones_like(k), minority)


def make_imbalanced(
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    ratios: Sequence[float] | None = None,
    profile: str = "long_tail",
    imbalance: float = 100,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A random imbalanced subset ``(images, labels)``, in the original order.

    Class c keeps ``max(1, round(ratios[c] * n_c))`` of its n_c samples; without ``ratios``
    the shares come from ``profile`` and ``imbalance`` (see :func:`imbalance_fractions`).
    """
    if labels.ndim != 1 or labels.dtype != torch.int64 or len(labels) != len(images):
        raise ValueError(
            f"make_imbalanced: labels must be int64 (N,) matching {len(images)} images, found "
            f"{labels.dtype} {tuple(labels.shape)}"
        )
    counts = torch.bincount(labels.cpu())
    k = len(counts)
    if ratios is None:
        share = imbalance_fractions(k, profile, imbalance)
    else:
        share = torch.as_tensor(list(ratios), dtype=torch.float64)
        if share.shape != (k,) or not bool(((share > 0) & (share <= 1)).all()):
            raise ValueError(
                f"make_imbalanced: ratios must be {k} numbers in (0, 1] (one per class), "
                f"got {list(ratios)!r}"
            )
    keep_n = torch.clamp(torch.round(share * counts), min=1).long()
    keep_n = torch.minimum(keep_n, counts)
    gen = torch.Generator().manual_seed(seed)
    keys = labels.cpu().double() + torch.rand(len(labels), generator=gen).double()
    grouped = torch.argsort(keys)  # indices grouped by class, random order inside each class
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(grouped)
    rank[grouped] = torch.arange(len(labels)) - starts[labels.cpu()[grouped]]
    chosen = torch.nonzero(rank < keep_n[labels.cpu()]).flatten()  # sorted = original order
    chosen = chosen.to(labels.device)
    return images[chosen], labels[chosen]


def make_imbalanced_dataset(dataset: Any, **options: Any) -> Any:
    """An ``ImageDataset`` whose training split is made imbalanced; the test split is kept."""
    x, y = make_imbalanced(dataset.train_images, dataset.train_labels, **options)
    return replace(dataset, train_images=x.contiguous(), train_labels=y,
                   source=f"{dataset.source} (imbalanced subset)")  # fmt: skip


def _counts(counts: Any, what: str) -> torch.Tensor:
    c = torch.as_tensor(counts, dtype=torch.float64)
    if c.ndim != 1 or len(c) < 1 or bool((c < 0).any()):
        raise ValueError(f"{what}: counts must be a 1-D list of numbers >= 0, got {counts!r}")
    return c


def class_weights_from_counts(counts: Any) -> torch.Tensor:
    """Balanced CE weights N / (K n_j) (§12.2.2): each class adds the same expected loss.

    Equals ``cnnlab.losses.class_weights_from("balanced", ...)``; an empty class is counted
    as 1 (it never occurs as a target, so its weight has no effect).
    """
    c = _counts(counts, "class_weights_from_counts").clamp_min(1)
    return (c.sum() / (len(c) * c)).float()


def cost_matrix_from_counts(counts: Any, *, scale_to_int: bool = False) -> torch.Tensor:
    """Cost matrix C(i, j) = n_j / n_i, zero diagonal (§12.2.2, eq. 12.2), float64 (K, K).

    Misclassifying a sample of a small class i costs more. With ``scale_to_int`` C is
    multiplied by the least common multiple of the reduced ratio terms (3:2:1 -> 6, eq. 12.3),
    making every off-diagonal cost an integer >= 1. Counts must be integers > 0.
    """
    c = _counts(counts, "cost_matrix_from_counts")
    if bool((c <= 0).any()):
        raise ValueError(f"cost_matrix_from_counts: every class needs a count > 0, got {counts!r}")
    cost = c[None, :] / c[:, None]
    cost.fill_diagonal_(0)
    if scale_to_int:
        if not bool((c == c.round()).all()):
            raise ValueError(
                f"cost_matrix_from_counts: scale_to_int needs integer counts, got {counts!r}"
            )
        ints = [int(v) for v in c.tolist()]
        g = math.gcd(*ints)
        lcm = math.lcm(*(v // g for v in ints))
        # Exact rational arithmetic, so 2/3 * 6 is exactly 4.
        exact = [
            [0 if i == j else Fraction(b, a) * lcm for j, b in enumerate(ints)]
            for i, a in enumerate(ints)
        ]
        cost = torch.tensor([[float(v) for v in row] for row in exact], dtype=torch.float64)
    return cost


def _confusion(cm: Any, what: str) -> torch.Tensor:
    m = torch.as_tensor(cm, dtype=torch.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or bool((m < 0).any()):
        raise ValueError(
            f"{what}: expected a square confusion matrix of counts >= 0 (rows = true class), "
            f"got shape {tuple(m.shape)}"
        )
    return m


def _error_rates(m: torch.Tensor) -> torch.Tensor:
    """Per true class: misclassified / all (0 for a class with no samples)."""
    total = m.sum(1)
    wrong = total - m.diagonal()
    return torch.where(total > 0, wrong / total.clamp_min(1), torch.zeros_like(total))


def cost_matrix_from_confusion(
    cm: Any,
    *,
    mode: str = "rate_weighted",
    rate_decimals: int | None = None,
    rounding: str = "none",
) -> torch.Tensor:
    """Cost matrix from a validation confusion matrix (rows = true, columns = predicted), §12.2.2.

    ``mode="counts"`` (eq. 12.4): C(i, j) = number of class-i samples predicted as j.
    ``mode="rate_weighted"`` (eq. 12.5): row i of the counts matrix times 100 * share_i, where
    share_i = e_i / sum_k e_k and e_i is class i's error rate. ``rate_decimals`` rounds the
    error rates in percent first (the book uses whole percents, 50 + 67 + 19 = 136);
    ``rounding`` is "none", "nearest" (half away from zero) or "floor" for the final values.
    The book's printed eq. 12.5 is "nearest" except one entry it truncates (36.76 -> 36).
    """
    m = _confusion(cm, "cost_matrix_from_confusion")
    if mode not in ("counts", "rate_weighted"):
        raise ValueError(
            f"cost_matrix_from_confusion: mode must be counts or rate_weighted, got {mode!r}"
        )
    if rounding not in ("none", "nearest", "floor"):
        raise ValueError(
            f"cost_matrix_from_confusion: rounding must be none, nearest or floor, got {rounding!r}"
        )
    cost = m.clone()
    cost.fill_diagonal_(0)
    if mode == "rate_weighted":
        rates = 100 * _error_rates(m)
        if rate_decimals is not None:
            rates = torch.round(rates * 10**rate_decimals) / 10**rate_decimals
        if float(rates.sum()) == 0:
            raise ValueError(
                "cost_matrix_from_confusion: no errors at all, the shares are undefined"
            )
        cost = cost * (100 * rates / rates.sum())[:, None]
    if rounding == "nearest":
        cost = torch.sign(cost) * torch.floor(cost.abs() + 0.5)
    elif rounding == "floor":
        cost = torch.floor(cost + 1e-9)  # 1e-9: 4.0000000001 and 3.9999999999 both mean 4
    return cost


def class_weights_from_cost_matrix(cost: Any) -> torch.Tensor:
    """CE weights from a cost matrix: row sums sum_j C(i, j), scaled to mean 1 (E.6 item 60).

    One of the two ways the handbook's extraction proposes to put C into a loss: weight the
    cross-entropy of a class-i sample by the total cost of misclassifying class i.
    """
    c = _confusion(cost, "class_weights_from_cost_matrix")
    rows = c.sum(1)
    if float(rows.sum()) == 0:
        raise ValueError("class_weights_from_cost_matrix: all costs are zero")
    return (rows / rows.mean()).float()


def class_weights_from_confusion(cm: Any, *, smoothing: float = 0.01) -> torch.Tensor:
    """Per-class CE weights from a validation confusion matrix (rows = true class), §12.2.2.

    Rule: weight_i is proportional to class i's error rate e_i plus ``smoothing`` (so a class
    with no validation errors keeps a small weight), scaled so the weights of the classes
    present in the matrix average 1 (the loss keeps its scale); a class with no validation
    samples gets weight 1. This is the book's "weight by each class's share of the error
    rates" (eq. 12.5) collapsed from a matrix to one weight per class.
    """
    m = _confusion(cm, "class_weights_from_confusion")
    if not (isinstance(smoothing, (int, float)) and smoothing > 0):
        raise ValueError(f"class_weights_from_confusion: smoothing must be > 0, got {smoothing!r}")
    seen = m.sum(1) > 0
    if not bool(seen.any()):
        raise ValueError("class_weights_from_confusion: the confusion matrix is empty")
    raw = _error_rates(m) + smoothing
    weights = torch.ones_like(raw)
    weights[seen] = raw[seen] / raw[seen].mean()
    return weights.float()
