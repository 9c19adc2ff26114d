"""Learning curves: loss and accuracy per epoch for train, validation and test (Handbook §10.5,
§11.2.2: the gap between train and held-out curves shows over-fitting, the loss curve's shape
a learning rate that is too high or too low)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from cnnlab.viz.png import new_figure

#: (column prefix, legend label, colour, line style); val/test dashed so they read in grey print.
SPLITS = (
    ("train", "train", "#1f77b4", "-"),
    ("val", "validation", "#2ca02c", "--"),
    ("test", "test", "#d62728", "--"),
)


def _series(history: Sequence[Mapping[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """Epochs and finite values of column ``key`` (missing, empty or NaN entries are skipped)."""
    xs, ys = [], []
    for i, row in enumerate(history):
        value = row.get(key)
        try:
            y = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
        if not math.isfinite(y):
            continue
        try:
            x = float(row.get("epoch", i + 1))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            x = float(i + 1)
        xs.append(x)
        ys.append(y)
    return xs, ys


def plot_curves(
    history: Sequence[Mapping[str, Any]], *, title: str | None = None, width: float = 8.0
) -> Any:
    """A two-panel figure (loss, accuracy in %) against epoch, one line per split present.

    ``history`` holds one mapping per epoch with ``epoch`` and any of ``train_loss``,
    ``train_acc``, ``val_loss``, ``val_acc``, ``test_loss``, ``test_acc``; missing or NaN values
    are skipped, so a single epoch or a run evaluated every k epochs still plots (as markers).
    """
    from matplotlib.ticker import MaxNLocator

    fig = new_figure(width, 3.0)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.16, top=0.86 if title else 0.9, wspace=0.25)
    axes = fig.subplots(1, 2)
    for ax, metric, label, scale in (
        (axes[0], "loss", "loss", 1.0),
        (axes[1], "acc", "accuracy (%)", 100.0),
    ):
        drawn, epochs = 0, []
        for prefix, name, colour, style in SPLITS:
            xs, ys = _series(history, f"{prefix}_{metric}")
            if not xs:
                continue
            marker = "o" if len(xs) <= 40 else None
            ax.plot(
                xs, [y * scale for y in ys], style, color=colour, marker=marker, ms=3.5, label=name
            )
            drawn += 1
            epochs += xs
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("epoch", fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if epochs and len(set(epochs)) <= 10:  # few epochs: one tick each, with some air
            ax.set_xticks(sorted(set(epochs)))
            ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
        ax.tick_params(labelsize=8)
        ax.grid(True, alpha=0.3)
        if drawn:
            ax.legend(fontsize=8, frameon=False)
        else:
            ax.text(0.5, 0.5, "no values", ha="center", va="center", transform=ax.transAxes)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig
