"""Schedules as functions of the iteration, against their formulas (§11.2.2, §13.2.1)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from cnnlab.optim.schedules import SCHEDULES, build_scheduler


def _factor(name, total=100, per_epoch=10, **opts):
    return SCHEDULES.build(name, total_steps=total, steps_per_epoch=per_epoch, **opts)


def test_step_halves_every_five_epochs():
    f = _factor("step")
    assert [f(t) for t in (0, 49, 50, 99, 100)] == [1, 1, 0.5, 0.5, 0.25]


def test_multistep_and_exponential_and_inverse_time():
    f = _factor("multistep", milestones=[3, 6], gamma=0.1)
    assert [f(29), f(30), f(60)] == [1, pytest.approx(0.1), pytest.approx(0.01)]
    g = _factor("exponential", gamma=0.5)
    assert g(20) == pytest.approx(0.25) and g(5) == pytest.approx(0.5**0.5)
    h = _factor("inverse_time", k=0.5)
    assert h(40) == pytest.approx(1 / (1 + 0.5 * 4))


def test_cosine_endpoints():
    f = _factor("cosine", min_factor=0.1)
    assert f(0) == 1 and f(50) == pytest.approx(0.55) and f(100) == pytest.approx(0.1)


def test_cyclic_cosine_restarts_like_eq_13_1():
    # T = 100 iterations, M = 3 cycles: period ceil(100/3) = 34. Eq. 13.1 counts t from 1.
    f = _factor("cosine_restarts", cycles=3)
    period = math.ceil(100 / 3)

    def eq131(t):  # alpha(t) / alpha0
        return 0.5 * (math.cos(math.pi * ((t - 1) % period) / period) + 1)

    for t in (1, 2, period, period + 1, 2 * period + 1, 100):
        assert f(t - 1) == pytest.approx(eq131(t))
    assert f(period) == 1.0 and f(period - 1) < 0.01  # restart point


def test_onecycle_shape():
    f = _factor("onecycle", pct_start=0.25, div_factor=10, final_div_factor=100)
    assert f(0) == pytest.approx(0.1) and f(25) == pytest.approx(1.0)
    assert f(100) == pytest.approx(1 / 1000)
    assert max(f(t) for t in range(101)) == pytest.approx(1.0)


def test_warmup_then_main_through_lambdalr():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.2)
    cfg = SimpleNamespace(name="cosine", warmup_epochs=1.0, params={})
    sched = build_scheduler(opt, cfg, total_steps=110, steps_per_epoch=10)
    lrs = []
    for _ in range(110):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.02) and lrs[9] == pytest.approx(0.2)
    assert lrs[10] == pytest.approx(0.2) and lrs[-1] < 0.001


@pytest.mark.parametrize("name", SCHEDULES.names())
def test_every_schedule_is_bounded(name):
    f = _factor(name)
    values = [f(t) for t in range(0, 101)]
    assert all(0 <= v <= 1.0 + 1e-12 for v in values)


def test_plateau_halves_after_patience():
    from cnnlab.optim.schedules import PlateauFactor

    f = PlateauFactor(patience=2, factor=0.5, min_factor=0.1, threshold=0.0)
    for value in (1.0, 0.9, 0.95, 0.95):
        f.observe(value)
    assert f(0) == 1.0  # two epochs without gain: still within patience
    f.observe(0.95)
    assert f(123) == 0.5
    for _ in range(20):
        f.observe(2.0)
    assert f(0) == 0.1  # floored at min_factor
    g = PlateauFactor(2, 0.5, 0.1, 0.0)
    g.load_state_dict(f.state_dict())
    assert g(0) == f(0) and g.best == f.best
