"""Number formatting of the reports, by hand."""

from __future__ import annotations

import pytest

from cnnlab.reports.fmt import (
    DASH,
    fmt_float,
    fmt_int,
    fmt_pct,
    fmt_seconds,
    fmt_si,
    fmt_value,
    number,
)


@pytest.mark.parametrize(
    ("value", "text"),
    [(0, "0"), (850, "850"), (7850, "7.85 k"), (54410, "54.4 k"), (999_950, "1.00 M"),
     (1_199_882, "1.20 M"), (61.1e6, "61.1 M"), (2.3e9, "2.30 G"), (0.5, "0.5"),
     (-1500, "-1.50 k"), (None, DASH), (float("nan"), DASH), ("x", DASH)],
)  # fmt: skip
def test_fmt_si(value, text):
    assert fmt_si(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.4249, "0.42 s"), (12.34, "12.3 s"), (245, "4 min 05 s"), (4000, "1 h 07 min"),
     (None, DASH), (float("inf"), DASH)],
)  # fmt: skip
def test_fmt_seconds(value, text):
    assert fmt_seconds(value) == text


def test_percentages_and_plain_numbers():
    assert fmt_pct(0.96875) == "96.88 %"
    assert fmt_pct(0.9, 0.0123) == "90.00 ± 1.23 %"
    assert fmt_pct(0.9, None) == fmt_pct(0.9, float("nan")) == "90.00 %"
    assert fmt_pct(float("nan")) == DASH
    assert fmt_float(1.04970538) == "1.0497"
    assert fmt_int(1234567.4) == "1,234,567"
    assert number(True) is None and number("2.5") == 2.5
    assert [fmt_value(v) for v in (None, True, 7850, 0.1 + 0.2, "cpu")] == [
        DASH, "yes", "7,850", "0.3", "cpu"
    ]  # fmt: skip
