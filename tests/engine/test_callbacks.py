"""StepClock: the step timer of the speed probes under benchmarks/."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from cnnlab.engine.callbacks import StepClock


def test_step_clock_marks_each_step_stops_after_n_and_drops_the_warm_up(monkeypatch):
    ticks = iter([10.0, 10.5, 11.5, 13.0, 15.0])
    # the callbacks module's own `time` name only, not the time module everyone shares
    fake_time = SimpleNamespace(perf_counter=lambda: next(ticks))
    monkeypatch.setattr("cnnlab.engine.callbacks.time", fake_time)
    clock = StepClock(stop_after=5)
    state = SimpleNamespace(step=0, should_stop=False)
    for step in range(1, 6):
        assert not state.should_stop
        state.step = step
        clock.on_step_end(None, state)
    assert state.should_stop and clock.marks == [10.0, 10.5, 11.5, 13.0, 15.0]
    # after 2 warm-up steps: steps 3, 4, 5 took 1.0, 1.5 and 2.0 s
    assert clock.step_seconds(2) == pytest.approx([1.0, 1.5, 2.0])
    assert clock.step_seconds(0) == pytest.approx([0.5, 1.0, 1.5, 2.0])
