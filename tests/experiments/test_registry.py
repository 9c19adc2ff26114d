"""The experiment registry: every experiment is described, plans at every scale, and every
Part D.1 exact check holds (each one is a unit test here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cnnlab.experiments import (
    Check,
    ExactExperiment,
    ExperimentError,
    TrendExperiment,
    load_all,
    ordered,
    select,
)
from cnnlab.experiments.base import SCALES, Context, section_key
from cnnlab.experiments.verdict import NOT_REPRODUCED, REPRODUCED

REGISTRY = load_all()
EXACT = [n for n in REGISTRY.names() if REGISTRY.get(n).kind == "exact"]
TREND = [n for n in REGISTRY.names() if REGISTRY.get(n).kind == "trend"]


def test_counts_cover_part_d():
    assert len(EXACT) == 35  # every row of Part D.1
    assert len(TREND) >= 22


@pytest.mark.parametrize("name", REGISTRY.names())
def test_every_experiment_is_described(name):
    exp = REGISTRY.get(name)
    info = exp.describe()
    for key in ("name", "section", "kind", "title", "claim", "runs", "measurement"):
        assert info[key], (name, key)
    assert "\n" not in exp.claim
    assert section_key(exp.section), exp.section


@pytest.mark.parametrize("name", TREND)
@pytest.mark.parametrize("scale", SCALES)
def test_every_trend_experiment_plans(name, scale, tmp_path):
    exp: TrendExperiment = REGISTRY.get(name)
    settings = exp.settings_for(scale)
    seeds = exp.default_seeds(scale)
    assert seeds >= 1
    assert exp.minutes[0] <= exp.minutes[1] <= 15  # sized for a 2-core CPU
    if scale == "full":
        assert seeds >= 2 or name in ("xor_needs_hidden_layer",)
    ctx = Context(scale, settings, list(range(seeds)), Path(tmp_path))
    arms = exp.arms_for(ctx)
    assert arms and len(set(arms)) == len(arms)
    assert settings is not exp.scales[scale]  # a copy: running cannot change the class


@pytest.mark.parametrize("name", EXACT)
def test_exact_check_holds(name, tmp_path):
    exp: ExactExperiment = REGISTRY.get(name)
    ctx = Context("quick", {}, [], Path(tmp_path))
    measured, verdict = exp.execute(ctx)
    failed = [c for c in measured["checks"] if not c["ok"]]
    assert not failed, failed
    assert verdict.status == REPRODUCED and measured["checks"]


def test_a_failing_check_is_not_reproduced(tmp_path):
    class Wrong(ExactExperiment):
        name, section, title = "wrong", "2.3.1", "wrong"
        claim = runs = measurement = "x"

        def checks(self):
            return [Check("right", 27, 27), Check("wrong", 26, 27), Check("close", 1.0, 1.05, 0.1)]

    measured, verdict = Wrong().execute(Context("quick", {}, [], Path(tmp_path)))
    assert verdict.status == NOT_REPRODUCED
    assert "wrong: got 26, expected 27" in verdict.reason
    assert [c["ok"] for c in measured["checks"]] == [True, False, True]


def test_select_groups_and_unknown_names():
    assert [e.name for e in select(["exact"])] == [e.name for e in ordered(EXACT)]
    assert len(select(["all"])) == len(REGISTRY)
    assert [e.name for e in select(["tukey_outliers", "xor_needs_hidden_layer"])] == [
        "xor_needs_hidden_layer",
        "tukey_outliers",
    ]  # handbook order
    with pytest.raises(ExperimentError, match="Did you mean 'tukey_outliers'"):
        select(["tukey_outlier"])
    with pytest.raises(ExperimentError, match="name at least one"):
        select([])


def test_handbook_order():
    keys = [section_key(e.section) for e in ordered()]
    assert keys == sorted(keys)
    assert section_key("2.2-2.3") == (2, 2) and section_key("A.2") > section_key("13.2.2")
