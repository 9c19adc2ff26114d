"""Human-friendly numbers for reports; anything missing or not finite shows as a dash."""

from __future__ import annotations

import math
from typing import Any

DASH = "—"


def number(value: Any) -> float | None:
    """``value`` as a finite float, or None (None, NaN, inf, text, bool)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def fmt_pct(value: Any, std: Any = None, digits: int = 2) -> str:
    """A fraction as a percentage: ``0.9688 -> "96.88 %"``, with ``± std`` when given."""
    x = number(value)
    if x is None:
        return DASH
    s = number(std)
    if s is None:
        return f"{100 * x:.{digits}f} %"
    return f"{100 * x:.{digits}f} ± {100 * s:.{digits}f} %"


def fmt_si(value: Any) -> str:
    """A count with three significant digits and a k/M/G/T suffix: ``7850 -> "7.85 k"``."""
    x = number(value)
    if x is None:
        return DASH
    sign, x = ("-" if x < 0 else ""), abs(x)
    if x < 1000:
        return f"{sign}{x:.0f}" if x == int(x) else f"{sign}{x:.3g}"
    for suffix, scale in (("k", 1e3), ("M", 1e6), ("G", 1e9), ("T", 1e12)):
        v = x / scale
        text = f"{v:.{2 if v < 10 else 1 if v < 100 else 0}f}"
        if float(text) < 1000 or suffix == "T":  # 999,950 rounds to "1000 k": use "1.00 M"
            return f"{sign}{text} {suffix}"
    return DASH  # pragma: no cover - the loop always returns


def fmt_int(value: Any) -> str:
    """An integer with thousands separators: ``7850 -> "7,850"``."""
    x = number(value)
    return DASH if x is None else f"{round(x):,}"


def fmt_seconds(value: Any) -> str:
    """A duration: ``0.42 s``, ``12.3 s``, ``4 min 05 s``, ``1 h 02 min``."""
    x = number(value)
    if x is None:
        return DASH
    if x < 10:
        return f"{x:.2f} s"
    if x < 60:
        return f"{x:.1f} s"
    if x < 3600:
        m, s = divmod(round(x), 60)
        return f"{m} min {s:02d} s"
    h, m = divmod(round(x / 60), 60)
    return f"{h} h {m:02d} min"


def fmt_count(n: int, noun: str) -> str:
    """``1 thread``, ``2 threads``: a count with its noun, plural unless it is one."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def fmt_float(value: Any, digits: int = 4) -> str:
    """A plain number with ``digits`` decimals (losses)."""
    x = number(value)
    return DASH if x is None else f"{x:.{digits}f}"


def fmt_value(value: Any) -> str:
    """Any JSON value for a key/value table: numbers trimmed, None as a dash."""
    if value is None:
        return DASH
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return DASH if not math.isfinite(value) else f"{value:.6g}"
    return str(value)
