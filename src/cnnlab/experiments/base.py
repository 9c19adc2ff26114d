"""Experiments: a handbook claim, the runs that test it, the measurement and a computed verdict.

Two kinds (Handbook Part D): ``ExactExperiment`` (D.1) recomputes a worked example or an
identity with cnnlab's own components and compares it with the book's number; it has no
seeds and runs instantly. ``TrendExperiment`` (D.2) trains small models for several arms
(variants) and seeds at one of three scales — ``smoke`` (synthetic data, a few steps; tests),
``quick`` (a few minutes on a 2-core CPU) and ``full`` (the results book) — and derives its
verdict from the per-seed numbers with the rules of :mod:`cnnlab.experiments.verdict`.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from cnnlab.experiments.verdict import (
    NOT_REPRODUCED,
    REPRODUCED,
    Part,
    Verdict,
    combine,
    mean_std,
)
from cnnlab.registry import Registry

EXPERIMENTS = Registry("experiment")
SCALES = ("smoke", "quick", "full")
Log = Callable[[str], None]


def register(cls: type[Experiment]) -> type[Experiment]:
    """Class decorator: instantiate the experiment and add it to ``EXPERIMENTS``."""
    exp = cls()
    exp.validate()
    EXPERIMENTS.register(exp.name)(exp)
    return cls


def section_key(section: str) -> tuple[int, ...]:
    """Sort key for "2.3.1", "11.2", "A.2", "B" (appendices after chapter 14)."""
    first = re.split(r"[ ,/-]", section.strip())[0]
    out = []
    for part in first.split("."):
        if part.isdigit():
            out.append(int(part))
        elif part:
            out.append(100 + ord(part[0].upper()) - ord("A"))
    return tuple(out)


@dataclass
class Check:
    """One exact comparison: a computed value against the book's (or a derived) value."""

    name: str
    measured: Any
    expected: Any
    tol: float = 0.0

    @property
    def ok(self) -> bool:
        return _close(self.measured, self.expected, self.tol)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "measured": _plain(self.measured),
            "expected": _plain(self.expected),
            "tol": self.tol,
            "ok": self.ok,
        }


def _plain(x: Any) -> Any:
    if hasattr(x, "tolist"):
        return x.tolist()
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def _close(a: Any, b: Any, tol: float) -> bool:
    a, b = _plain(a), _plain(b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_close(x, y, tol) for x, y in zip(a, b, strict=True))
    if isinstance(a, bool) or isinstance(b, bool) or isinstance(a, str) or isinstance(b, str):
        return a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if not (math.isfinite(a) and math.isfinite(b)):
            return a == b
        return abs(a - b) <= tol
    return a == b


@dataclass
class Context:
    """What a running experiment may use: its settings, seeds, data and output directory."""

    scale: str
    settings: dict[str, Any]
    seeds: list[int]
    out_dir: Path
    data_dir: str | None = None
    log: Log = print
    cache: dict[str, Any] = field(default_factory=dict)

    @property
    def smoke(self) -> bool:
        return self.scale == "smoke"

    def run_dir(self, arm: str, seed: int) -> Path:
        """Where one training of ``arm`` with ``seed`` writes its files."""
        safe = re.sub(r"[^A-Za-z0-9_.=-]+", "_", arm)
        return self.out_dir / "runs" / safe / f"seed{seed}"


class Experiment:
    """Common description of an experiment (subclasses set the class attributes)."""

    name: ClassVar[str] = ""
    section: ClassVar[str] = ""
    kind: ClassVar[str] = ""
    title: ClassVar[str] = ""
    claim: ClassVar[str] = ""  # the handbook's claim, rendered in our own English
    runs: ClassVar[str] = ""  # what runs test it
    measurement: ClassVar[str] = ""  # what is measured and how the verdict is computed
    minutes: ClassVar[tuple[float, float]] = (0.0, 0.0)  # expected (quick, full) duration

    def validate(self) -> None:
        for attr in ("name", "section", "kind", "title", "claim", "runs", "measurement"):
            if not getattr(self, attr):
                raise ValueError(f"experiment {type(self).__name__}: {attr} is empty")
        if self.kind not in ("exact", "trend"):
            raise ValueError(f"experiment {self.name}: kind must be exact or trend")

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "section": self.section,
            "kind": self.kind,
            "title": self.title,
            "claim": self.claim,
            "runs": self.runs,
            "measurement": self.measurement,
            "minutes": {"quick": self.minutes[0], "full": self.minutes[1]},
        }

    def settings_for(self, scale: str) -> dict[str, Any]:
        return {}

    def default_seeds(self, scale: str) -> int:
        return 1

    def execute(self, ctx: Context) -> tuple[dict[str, Any], Verdict]:
        """Run and judge: (measured numbers, verdict)."""
        raise NotImplementedError


class ExactExperiment(Experiment):
    """A D.1 check: ``checks()`` returns the computed values against the expected ones."""

    kind = "exact"

    def checks(self) -> list[Check]:
        raise NotImplementedError

    def execute(self, ctx: Context) -> tuple[dict[str, Any], Verdict]:
        checks = self.checks()
        failed = [c for c in checks if not c.ok]
        status = NOT_REPRODUCED if failed else REPRODUCED
        if failed:
            reason = "; ".join(
                f"{c.name}: got {c.measured!r}, expected {c.expected!r}" for c in failed
            )
        else:
            reason = "the check holds" if len(checks) == 1 else f"all {len(checks)} checks hold"
        part = Part(self.claim, status, reason, {"checks": len(checks), "failed": len(failed)})
        return {"checks": [c.to_dict() for c in checks]}, Verdict(status, reason, [part])


@dataclass(frozen=True)
class Metric:
    """A per-seed number an arm reports: its label and which direction is better."""

    label: str
    higher_is_better: bool = True
    unit: str = ""


class TrendExperiment(Experiment):
    """A D.2 study: arms x seeds of small trainings, summarised and judged.

    Subclasses set ``arms``, ``metrics``, ``scales`` ({"smoke": {...}, "quick": {...},
    "full": {...}}, each with ``seeds``) and implement ``trial(ctx, arm, seed)`` (or
    ``run_seed`` when the arms share one training) and ``judge(measured)``. A trial returns a
    dict of metric values; the key ``"curve"`` may hold ``{"x": [...], "y": [...]}``.
    """

    kind = "trend"
    arms: ClassVar[Sequence[str]] = ()
    metrics: ClassVar[Mapping[str, Metric]] = {}
    scales: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    curve_labels: ClassVar[tuple[str, str]] = ("", "")  # (x label, y label)
    headline: ClassVar[str] = ""  # the metric shown in the bar chart (first metric if empty)

    def validate(self) -> None:
        super().validate()
        missing = [s for s in SCALES if s not in self.scales]
        if missing or not self.arms or not self.metrics:
            raise ValueError(f"experiment {self.name}: needs arms, metrics and scales {SCALES}")

    def settings_for(self, scale: str) -> dict[str, Any]:
        return copy.deepcopy(dict(self.scales[scale]))

    def default_seeds(self, scale: str) -> int:
        return int(self.scales[scale].get("seeds", 1))

    def arms_for(self, ctx: Context) -> list[str]:
        """The arms run at this scale (a scale may list a subset as ``arms``)."""
        return list(ctx.settings.get("arms", self.arms))

    def trial(self, ctx: Context, arm: str, seed: int) -> dict[str, Any]:
        raise NotImplementedError

    def run_seed(self, ctx: Context, seed: int) -> dict[str, dict[str, Any]]:
        """Every arm for one seed (override when the arms share a trained model)."""
        out = {}
        for arm in self.arms_for(ctx):
            ctx.log(f"{self.name}: {arm}, seed {seed}")
            out[arm] = self.trial(ctx, arm, seed)
        return out

    def judge(self, m: Measured) -> list[Part]:
        raise NotImplementedError

    def execute(self, ctx: Context) -> tuple[dict[str, Any], Verdict]:
        per_seed: dict[str, list[dict[str, Any]]] = {}
        curves: dict[str, list[dict[str, Any]]] = {}
        for seed in ctx.seeds:
            for arm, values in self.run_seed(ctx, seed).items():
                values = dict(values)
                curve = values.pop("curve", None)
                per_seed.setdefault(arm, []).append({"seed": seed, **values})
                if curve is not None:
                    curves.setdefault(arm, []).append({"seed": seed, **curve})
        measured = Measured(per_seed, curves, dict(self.metrics))
        verdict = combine(self.judge(measured))
        return measured.to_dict(self.curve_labels, self.headline), verdict


class Measured:
    """Per-arm, per-seed numbers of a trend experiment, with summaries for the verdict."""

    def __init__(
        self,
        per_seed: dict[str, list[dict[str, Any]]],
        curves: dict[str, list[dict[str, Any]]] | None = None,
        metrics: Mapping[str, Metric] | None = None,
    ) -> None:
        self.per_seed = per_seed
        self.curves = curves or {}
        self.metrics = dict(metrics or {})

    def values(self, arm: str, metric: str) -> list[float]:
        if arm not in self.per_seed:
            raise KeyError(f"no arm {arm!r}; measured arms: {', '.join(self.per_seed)}")
        return [float(row[metric]) for row in self.per_seed[arm]]

    def has(self, arm: str) -> bool:
        return arm in self.per_seed

    def summary(self) -> dict[str, dict[str, dict[str, Any]]]:
        """{arm: {metric: {mean, std, values}}} for every numeric metric."""
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for arm, rows in self.per_seed.items():
            keys = [k for k in rows[0] if k != "seed"]
            for key in keys:
                vals = [r.get(key) for r in rows]
                if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
                    continue
                finite = [float(v) for v in vals if math.isfinite(float(v))]
                if not finite:
                    continue
                mean, std = mean_std(finite)
                out.setdefault(arm, {})[key] = {"mean": mean, "std": std, "values": vals}
        return out

    def to_dict(self, curve_labels: tuple[str, str] = ("", ""), headline: str = "") -> dict:
        return {
            "arms": list(self.per_seed),
            "metrics": {
                k: {"label": m.label, "higher_is_better": m.higher_is_better, "unit": m.unit}
                for k, m in self.metrics.items()
            },
            "headline": headline or next(iter(self.metrics), ""),
            "per_seed": self.per_seed,
            "summary": self.summary(),
            "curves": self.curves,
            "curve_labels": list(curve_labels),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Measured:
        metrics = {
            k: Metric(v["label"], v["higher_is_better"], v.get("unit", ""))
            for k, v in data.get("metrics", {}).items()
        }
        return cls(dict(data["per_seed"]), dict(data.get("curves", {})), metrics)


def load_all() -> Registry:
    """The registry of every experiment. The package ``cnnlab.experiments`` imports each
    chapter module explicitly (registration happens on import), and any import of this module
    runs the package first, so the registry is always full here."""
    return EXPERIMENTS


def ordered(names: Sequence[str] | None = None) -> list[Experiment]:
    """Experiments in handbook order (section, then exact before trend, then name)."""
    reg = load_all()
    chosen = [reg.get(n) for n in names] if names else [reg.get(n) for n in reg.names()]
    return sorted(chosen, key=lambda e: (section_key(e.section), e.kind != "exact", e.name))
