"""Verdicts computed from measured numbers: "reproduced", "not reproduced", "inconclusive".

A trend claim is checked by one or more *parts*, each a rule applied to per-seed numbers; the
experiment's verdict combines its parts. The rules (also printed in ``docs/experiments.md``):

``compare`` (A beats B): per seed, d_s = A - B oriented so that d > 0 supports the claim (for
a lower-is-better metric, d_s = B - A). With one seed: reproduced if d > min_effect, not
reproduced if d < -min_effect, else inconclusive (no spread can be estimated from one seed).
With n >= 2 seeds the *spread* is the pooled sample standard deviation of the two arms,
sqrt((s_A^2 + s_B^2) / 2), and

- the seeds disagree (some d_s > 0, some <= 0, or all zero): inconclusive;
- |mean d| < max(2 x spread, min_effect): inconclusive (the effect is within the seed noise);
- otherwise reproduced if mean d > 0, not reproduced if mean d < 0.

``non_inferior`` (A matches or beats B within a margin delta): with d_s oriented as above and
the same spread (0 for one seed): reproduced if mean d - 2 x spread >= -delta, not reproduced
if mean d + 2 x spread < -delta, else inconclusive.

``threshold`` (a value passes a fixed bar on every seed): reproduced if every seed passes,
not reproduced if none does, inconclusive if the seeds disagree.

``combine``: all parts reproduced -> reproduced; any part not reproduced -> not reproduced;
otherwise (some part inconclusive) -> inconclusive.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"
STATUSES = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE)


@dataclass
class Part:
    """One computed check of a claim: its status, a one-line reason and the numbers used."""

    claim: str
    status: str
    reason: str
    numbers: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "claim": self.claim,
            "status": self.status,
            "reason": self.reason,
            "numbers": self.numbers,
        }


@dataclass
class Verdict:
    status: str
    reason: str
    parts: list[Part] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.status,
            "reason": self.reason,
            "parts": [p.to_dict() for p in self.parts],
        }


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("mean_std: no values")
    return statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0


def pooled_std(a: Sequence[float], b: Sequence[float]) -> float:
    """sqrt((s_a^2 + s_b^2) / 2) with sample variances; 0 when either side has one value."""
    if len(a) < 2 or len(b) < 2:
        return 0.0
    return math.sqrt((statistics.variance(a) + statistics.variance(b)) / 2)


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _check_pairs(a: Sequence[float], b: Sequence[float], what: str) -> None:
    if len(a) != len(b) or not a:
        raise ValueError(f"{what}: need the same non-zero number of seeds, got {len(a)}, {len(b)}")
    bad = [v for v in (*a, *b) if not math.isfinite(float(v))]
    if bad:
        raise ValueError(f"{what}: non-finite values {bad}")


def _paired(
    claim: str,
    a: Sequence[float],
    b: Sequence[float],
    higher_is_better: bool,
    names: tuple[str, str],
) -> tuple[list[float], float, float, tuple[float, float], dict[str, Any]]:
    """Per-seed differences oriented so > 0 supports the claim, their mean, the pooled seed
    spread, both arms' means, and the numbers recorded with the part."""
    _check_pairs(a, b, claim)
    sign = 1.0 if higher_is_better else -1.0
    d = [sign * (float(x) - float(y)) for x, y in zip(a, b, strict=True)]
    mean_d, spread = statistics.fmean(d), pooled_std(a, b)
    (ma, sa), (mb, sb) = mean_std(a), mean_std(b)
    numbers = {
        names[0]: {"mean": ma, "std": sa, "values": list(map(float, a))},
        names[1]: {"mean": mb, "std": sb, "values": list(map(float, b))},
        "diff_per_seed": d,
        "mean_diff": mean_d,
        "spread": spread,
    }
    return d, mean_d, spread, (ma, mb), numbers


def compare(
    claim: str,
    a: Sequence[float],
    b: Sequence[float],
    *,
    higher_is_better: bool = True,
    min_effect: float = 0.0,
    names: tuple[str, str] = ("A", "B"),
) -> Part:
    """Does A beat B on every seed, by more than the seed spread? (rule in the module doc)."""
    d, mean_d, spread, (ma, mb), numbers = _paired(claim, a, b, higher_is_better, names)
    numbers["min_effect"] = min_effect
    desc = f"{names[0]} {_fmt(ma)} vs {names[1]} {_fmt(mb)} (effect {mean_d:+.4g}"
    if len(d) == 1:
        desc += ", 1 seed: no spread estimate)"
        if d[0] > min_effect:
            return Part(claim, REPRODUCED, desc, numbers)
        if d[0] < -min_effect:
            return Part(claim, NOT_REPRODUCED, desc, numbers)
        return Part(claim, INCONCLUSIVE, f"{desc}; |effect| <= min effect {min_effect}", numbers)
    desc += f", seed spread {spread:.3g}, {len(d)} seeds)"
    if not (all(x > 0 for x in d) or all(x < 0 for x in d)):
        return Part(claim, INCONCLUSIVE, f"{desc}; the seeds disagree on the sign", numbers)
    bar = max(2 * spread, min_effect)
    if abs(mean_d) < bar:
        return Part(
            claim, INCONCLUSIVE, f"{desc}; |effect| < {bar:.3g} (2 x spread or min effect)", numbers
        )
    return Part(claim, REPRODUCED if mean_d > 0 else NOT_REPRODUCED, desc, numbers)


def non_inferior(
    claim: str,
    a: Sequence[float],
    b: Sequence[float],
    *,
    margin: float,
    higher_is_better: bool = True,
    names: tuple[str, str] = ("A", "B"),
) -> Part:
    """Is A at least as good as B up to ``margin``? (rule in the module doc)."""
    d, mean_d, spread, (ma, mb), numbers = _paired(claim, a, b, higher_is_better, names)
    numbers["margin"] = margin
    desc = (
        f"{names[0]} {_fmt(ma)} vs {names[1]} {_fmt(mb)} (effect {mean_d:+.4g}, margin "
        f"{margin:g}, seed spread {spread:.3g}, {len(d)} seed{'s' if len(d) > 1 else ''})"
    )
    if mean_d - 2 * spread >= -margin:
        return Part(claim, REPRODUCED, desc, numbers)
    if mean_d + 2 * spread < -margin:
        return Part(claim, NOT_REPRODUCED, f"{desc}; clearly worse than the margin", numbers)
    return Part(claim, INCONCLUSIVE, f"{desc}; the seed spread straddles the margin", numbers)


def threshold(
    claim: str,
    values: Sequence[float],
    *,
    above: float | None = None,
    below: float | None = None,
    what: str = "value",
) -> Part:
    """Does every seed's value pass the bar (``> above`` and/or ``< below``)?"""
    if not values:
        raise ValueError(f"{claim}: no values")
    vals = [float(v) for v in values]

    def ok(v: float) -> bool:
        return math.isfinite(v) and (above is None or v > above) and (below is None or v < below)

    passed = [ok(v) for v in vals]
    bar = " and ".join(
        s
        for s in (
            (f"> {above:g}" if above is not None else ""),
            (f"< {below:g}" if below is not None else ""),
        )
        if s
    )
    shown = ", ".join(_fmt(v) for v in vals)
    numbers = {"values": vals, "above": above, "below": below, "passed": passed}
    desc = f"{what} {shown} (bar {bar}): {sum(passed)} of {len(vals)} seeds pass"
    if all(passed):
        return Part(claim, REPRODUCED, desc, numbers)
    if not any(passed):
        return Part(claim, NOT_REPRODUCED, desc, numbers)
    return Part(claim, INCONCLUSIVE, f"{desc}; the seeds disagree", numbers)


def combine(parts: Sequence[Part]) -> Verdict:
    """The experiment's verdict from its parts (rule in the module doc)."""
    if not parts:
        raise ValueError("combine: an experiment needs at least one part")
    statuses = [p.status for p in parts]
    bad = [p for p in parts if p.status not in STATUSES]
    if bad:
        raise ValueError(f"unknown status {bad[0].status!r}")
    if all(s == REPRODUCED for s in statuses):
        status = REPRODUCED
    elif NOT_REPRODUCED in statuses:
        status = NOT_REPRODUCED
    else:
        status = INCONCLUSIVE
    if len(parts) == 1:
        reason = parts[0].reason
    else:
        reason = "; ".join(f"[{p.status}] {p.claim}: {p.reason}" for p in parts)
    return Verdict(status, reason, list(parts))
