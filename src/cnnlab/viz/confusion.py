"""Confusion matrices: rows are true classes, columns predicted (Handbook §12.2.2)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cnnlab.viz.png import new_figure

#: Up to this many classes each cell gets its count written in; beyond, the numbers would be
#: unreadably small, so the figure shows colour only.
ANNOTATE_MAX = 25
#: Up to this many classes every class name is a tick label; beyond, only some are.
LABEL_MAX = 50


def as_matrix(cm: Any) -> np.ndarray:
    """``cm`` as a square int64 array, or a ValueError naming the shape found."""
    arr = np.asarray(cm, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1] or arr.shape[0] == 0:
        raise ValueError(f"confusion matrix must be square (C, C), got shape {arr.shape}")
    return np.nan_to_num(arr, nan=0.0).astype(np.int64)


def row_fractions(cm: Any) -> np.ndarray:
    """Each row divided by its total (the share of a true class given to each prediction)."""
    arr = as_matrix(cm).astype(np.float64)
    totals = arr.sum(axis=1, keepdims=True)
    return np.divide(arr, totals, out=np.zeros_like(arr), where=totals > 0)


def top_confusions(cm: Any, k: int = 5) -> list[tuple[int, int, int]]:
    """The ``k`` largest off-diagonal cells as ``(true, predicted, count)``, largest first."""
    arr = as_matrix(cm).copy()
    np.fill_diagonal(arr, 0)
    flat = np.argsort(-arr, axis=None, kind="stable")[:k]
    out = []
    for idx in flat:
        i, j = divmod(int(idx), arr.shape[1])
        if arr[i, j] > 0:
            out.append((i, j, int(arr[i, j])))
    return out


def _label_step(n: int) -> int:
    return 1 if n <= LABEL_MAX else int(np.ceil(n / 25))


def plot_confusion(cm: Any, classes: Sequence[str] | None = None, *, title: str | None = None):
    """Heat map of ``cm`` coloured by row share (so rare classes show as clearly as common ones),
    with the counts written in while there are at most ``ANNOTATE_MAX`` classes."""
    arr = as_matrix(cm)
    n = arr.shape[0]
    names = [str(c) for c in classes] if classes is not None else [str(i) for i in range(n)]
    if len(names) != n:
        raise ValueError(f"confusion matrix has {n} classes but {len(names)} class names given")
    step = _label_step(n)
    ticks = list(range(0, n, step))
    label_size = max(4.0, min(9.0, 200.0 / len(ticks)))
    longest = max(len(names[i]) for i in ticks)
    side = min(3.5 + 0.3 * n, 9.0)  # inches of matrix
    # room for the rotated tick labels: a character is about 0.6 em wide, 1 pt = 1/72 inch
    margin = 0.5 + 0.6 * label_size / 72 * min(longest, 24)
    total = side + margin + 0.2
    fig = new_figure(total, total + (0.3 if title else 0.0))
    ax = fig.add_axes((margin / total, margin / fig.get_figheight(), side / total,
                       side / fig.get_figheight()))  # fmt: skip
    frac = row_fractions(arr)
    ax.imshow(frac, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest", aspect="auto")
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)
    ax.set_xticklabels([names[i] for i in ticks], rotation=90, fontsize=label_size)
    ax.set_yticklabels([names[i] for i in ticks], fontsize=label_size)
    ax.set_xlabel("predicted class", fontsize=9)
    ax.set_ylabel("true class", fontsize=9)
    if n <= ANNOTATE_MAX:
        size = max(5.0, min(9.0, 120.0 / n))
        for i in range(n):
            for j in range(n):
                if arr[i, j]:
                    colour = "white" if frac[i, j] > 0.55 else "#222222"
                    ax.text(j, i, str(arr[i, j]), ha="center", va="center", fontsize=size,
                            color=colour)  # fmt: skip
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def cell_colour(fraction: float) -> str:
    """The CSS colour of a cell holding ``fraction`` of its row: white to a deep blue."""
    f = float(np.clip(np.nan_to_num(fraction), 0.0, 1.0))
    low, high = np.array([255, 255, 255]), np.array([8, 69, 148])  # white -> Blues' darkest
    r, g, b = (low + (high - low) * f).round().astype(int)
    return f"#{r:02x}{g:02x}{b:02x}"
