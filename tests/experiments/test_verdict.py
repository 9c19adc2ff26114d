"""Verdict rules on hand-made numbers (cnnlab.experiments.verdict)."""

from __future__ import annotations

import math

import pytest

from cnnlab.experiments.verdict import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    REPRODUCED,
    Part,
    combine,
    compare,
    non_inferior,
    pooled_std,
    threshold,
)


def test_pooled_std_by_hand():
    # variances 1 (of 1, 2, 3) and 4 (of 2, 4, 6): sqrt((1 + 4) / 2)
    assert pooled_std([1, 2, 3], [2, 4, 6]) == pytest.approx(math.sqrt(2.5))
    assert pooled_std([1.0], [5.0]) == 0.0


def test_clear_win_is_reproduced():
    p = compare("A beats B", [0.90, 0.91, 0.92], [0.80, 0.81, 0.80])
    assert p.status == REPRODUCED
    assert p.numbers["mean_diff"] == pytest.approx(0.10667, abs=1e-4)
    assert p.numbers["diff_per_seed"] == pytest.approx([0.10, 0.10, 0.12])


def test_clear_loss_is_not_reproduced():
    p = compare("A beats B", [0.70, 0.71, 0.69], [0.80, 0.81, 0.80])
    assert p.status == NOT_REPRODUCED


def test_lower_is_better_flips_the_orientation():
    # A has the lower error: that supports "A is better" when lower is better.
    assert compare("x", [0.1, 0.12], [0.3, 0.31], higher_is_better=False).status == REPRODUCED
    assert compare("x", [0.1, 0.12], [0.3, 0.31]).status == NOT_REPRODUCED


def test_seeds_disagreeing_are_inconclusive_with_spread():
    p = compare("A beats B", [0.90, 0.70, 0.91], [0.80, 0.80, 0.80])
    assert p.status == INCONCLUSIVE
    assert "disagree" in p.reason
    assert p.numbers["spread"] > 0 and "spread" in p.reason


def test_effect_within_the_seed_spread_is_inconclusive():
    # Every seed agrees on the sign, but the effect (0.01) is below 2 x spread (~0.07).
    a, b = [0.85, 0.95, 0.75], [0.84, 0.94, 0.74]
    assert pooled_std(a, b) == pytest.approx(0.1)
    p = compare("A beats B", a, b)
    assert p.status == INCONCLUSIVE and "2 x spread" in p.reason


def test_single_seed_uses_the_minimum_effect():
    assert compare("x", [0.9], [0.8]).status == REPRODUCED
    assert compare("x", [0.8], [0.9]).status == NOT_REPRODUCED
    p = compare("x", [0.805], [0.80], min_effect=0.01)
    assert p.status == INCONCLUSIVE and "1 seed" in p.reason


def test_min_effect_applies_with_several_seeds():
    a, b = [0.801, 0.802, 0.803], [0.80, 0.80, 0.80]
    assert compare("x", a, b).status == REPRODUCED  # zero spread in b, tiny but clean
    assert compare("x", a, b, min_effect=0.01).status == INCONCLUSIVE


def test_non_inferiority():
    assert non_inferior("x", [0.895, 0.90], [0.90, 0.90], margin=0.01).status == REPRODUCED
    assert non_inferior("x", [0.80, 0.80], [0.90, 0.90], margin=0.01).status == NOT_REPRODUCED
    noisy = non_inferior("x", [0.85, 0.92], [0.90, 0.90], margin=0.01)
    assert noisy.status == INCONCLUSIVE


def test_threshold_all_none_or_mixed():
    assert threshold("x", [0.99, 0.97], above=0.95).status == REPRODUCED
    assert threshold("x", [0.5, 0.6], above=0.95).status == NOT_REPRODUCED
    mixed = threshold("x", [0.99, 0.6], above=0.95)
    assert mixed.status == INCONCLUSIVE and "disagree" in mixed.reason
    assert threshold("x", [float("nan")], below=1.0).status == NOT_REPRODUCED


def test_combine():
    ok, bad, unsure = (Part("a", REPRODUCED, ""), Part("b", NOT_REPRODUCED, ""),
                       Part("c", INCONCLUSIVE, ""))  # fmt: skip
    assert combine([ok, ok]).status == REPRODUCED
    assert combine([ok, unsure]).status == INCONCLUSIVE
    assert combine([ok, unsure, bad]).status == NOT_REPRODUCED
    with pytest.raises(ValueError, match="at least one part"):
        combine([])


def test_bad_numbers_fail_clearly():
    with pytest.raises(ValueError, match="same non-zero number of seeds"):
        compare("x", [1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="non-finite"):
        compare("x", [float("inf")], [1.0])
