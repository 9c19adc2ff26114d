"""Figures of an experiment, drawn from its result.json alone (so the book can redraw them).

A bar chart of the headline metric (mean ± std per arm, one dot per seed) and, when the
trials recorded curves, one line per arm and seed (e.g. training error against epochs).
"""

from __future__ import annotations

import math
from typing import Any

from cnnlab.viz.png import figure_to_png, new_figure

COLOURS = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#ff7f0e",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def bar_png(result: dict[str, Any]) -> bytes | None:
    """Mean ± std of the headline metric per arm, with the per-seed values as dots."""
    m = result["measured"]
    key = m.get("headline")
    if not key:
        return None
    arms = [a for a in m["arms"] if any(_finite(r.get(key)) for r in m["per_seed"][a])]
    if not arms:
        return None
    fig = new_figure(max(4.0, 1.0 + 0.9 * len(arms)), 3.2)
    ax = fig.add_subplot(1, 1, 1)
    for i, arm in enumerate(arms):
        vals = [float(r[key]) for r in m["per_seed"][arm] if _finite(r.get(key))]
        mean = sum(vals) / len(vals)
        std = (sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) ** 0.5 if len(vals) > 1 else 0
        ax.bar(
            i,
            mean,
            yerr=std or None,
            color=COLOURS[i % len(COLOURS)],
            alpha=0.55,
            capsize=4,
            width=0.6,
        )
        ax.plot([i] * len(vals), vals, "o", color="black", markersize=3.5)
    ax.set_xticks(range(len(arms)))
    ax.set_xticklabels(
        arms,
        rotation=20 if len(arms) > 4 else 0,
        ha="right" if len(arms) > 4 else "center",
        fontsize=8,
    )
    meta = m["metrics"].get(key, {})
    ax.set_ylabel(meta.get("label", key), fontsize=8)
    ax.set_title(result["name"], fontsize=9)
    fig.tight_layout()
    return figure_to_png(fig)


def curves_png(result: dict[str, Any]) -> bytes | None:
    """Each arm's curves (one thin line per seed, same colour per arm)."""
    m = result["measured"]
    curves = m.get("curves") or {}
    if not curves:
        return None
    fig = new_figure(6.4, 3.4)
    ax = fig.add_subplot(1, 1, 1)
    for i, (arm, runs) in enumerate(curves.items()):
        colour = COLOURS[i % len(COLOURS)]
        for k, run in enumerate(runs):
            pts = [(x, y) for x, y in zip(run["x"], run["y"], strict=False) if _finite(y)]
            if not pts:
                continue
            xs, ys = zip(*pts, strict=True)
            ax.plot(xs, ys, color=colour, linewidth=1.2, alpha=0.85, label=arm if k == 0 else None)
    xlabel, ylabel = (m.get("curve_labels") or ["", ""])[:2]
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    if "log" in ylabel:
        ax.set_yscale("log")
    ax.legend(fontsize=7)
    ax.set_title(result["name"], fontsize=9)
    fig.tight_layout()
    return figure_to_png(fig)


def result_figures(result: dict[str, Any]) -> list[tuple[str, bytes]]:
    """(caption, PNG bytes) of every figure the result supports."""
    if result.get("kind") != "trend":
        return []
    out = []
    m = result["measured"]
    bar = bar_png(result)
    if bar is not None:
        label = m["metrics"].get(m.get("headline"), {}).get("label", m.get("headline"))
        out.append((f"{label}: mean ± std over seeds, dots are single seeds", bar))
    curves = curves_png(result)
    if curves is not None:
        out.append(("Curves per arm (one line per seed)", curves))
    return out
