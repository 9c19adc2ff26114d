"""Accuracy against cost for a set of models: parameters and training time on log axes."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from cnnlab.viz.png import new_figure

PANELS = (("params", "parameters"), ("train_seconds", "training time (s)"))


def _number(value: Any) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return math.nan
    return x


def point_label(row: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> str:
    """The model name, plus the recipe when the same model appears more than once."""
    model = str(row.get("model", "?"))
    if sum(str(r.get("model")) == model for r in rows) > 1 and row.get("recipe"):
        return f"{model} ({row['recipe']})"
    return model


def si_label(x: float, _pos: Any = None) -> str:
    """Tick text for a log axis: ``20000 -> "20k"``, ``0.5 -> "0.5"``."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if x >= scale:
            return f"{x / scale:g}{suffix}"
    return f"{x:g}"


def _log_axis(ax: Any) -> None:
    """Log x axis labelled at 1, 2 and 5 times powers of ten, without minor-tick clutter."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(si_label))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _point(ax: Any, x: float, acc: float, std: float, best: bool) -> None:
    ax.errorbar(
        x,
        100 * acc,
        yerr=100 * std if math.isfinite(std) else None,
        fmt="*" if best else "o",
        ms=11 if best else 6,
        color="#d62728" if best else "#1f77b4",
        capsize=3,
    )


def plot_tradeoff(rows: Sequence[Mapping[str, Any]], *, width: float = 10.0) -> Any:
    """Test accuracy (%, with ± std bars) vs parameters and vs training seconds, one labelled
    point per row; the most accurate row is drawn as a star. Rows without a finite, positive
    cost or a finite accuracy are left out of that panel."""
    fig = new_figure(width, 3.4)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.15, top=0.9, wspace=0.2)
    axes = fig.subplots(1, 2)
    accs = [_number(r.get("test_acc")) for r in rows]
    finite = [a for a in accs if math.isfinite(a)]
    best = max(finite) if finite else math.nan
    for ax, (key, label) in zip(axes, PANELS, strict=True):
        points = [
            (x, acc, row)
            for row, acc in zip(rows, accs, strict=True)
            if math.isfinite(acc) and math.isfinite(x := _number(row.get(key))) and x > 0
        ]
        points.sort(key=lambda p: (p[0], p[1]))  # by cost: neighbours' labels alternate sides
        for rank, (x, acc, row) in enumerate(points):
            _point(ax, x, acc, _number(row.get("test_acc_std")), acc == best)
            ax.annotate(
                point_label(row, rows), (x, 100 * acc), xytext=(5, 4 if rank % 2 == 0 else -11),
                textcoords="offset points", fontsize=8,
            )  # fmt: skip
        if points:
            _log_axis(ax)
        else:
            ax.text(0.5, 0.5, "no values", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel(f"{label}, log scale", fontsize=9)
        ax.set_ylabel("test accuracy (%)", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(True, which="both", alpha=0.25)
        ax.margins(x=0.15, y=0.12)
    return fig
