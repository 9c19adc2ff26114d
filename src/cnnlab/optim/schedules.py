"""Learning-rate schedules (handbook §11.2.2, §13.2.1) as pure functions of the iteration.

Builder contract: ``builder(*, total_steps, steps_per_epoch, **options) -> Callable[[int], float]``
returning the factor that multiplies the base learning rate at iteration ``t`` (0-based).
``build_scheduler`` wraps the factor (and an optional linear warm-up) in torch's ``LambdaLR``,
stepped once per iteration; because the factor is a pure function of ``t``, resuming a run only
needs the iteration count.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from cnnlab.registry import SCHEDULES

Factor = Callable[[int], float]


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: Any, *, total_steps: int, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """``LambdaLR`` from a ``ScheduleConfig`` (name, warmup_epochs, params). A metric-driven
    factor (``plateau``) stays reachable as ``scheduler.factor`` for the run to feed it."""
    warmup = round(cfg.warmup_epochs * steps_per_epoch)
    main = SCHEDULES.build(
        cfg.name,
        total_steps=max(1, total_steps - warmup),
        steps_per_epoch=steps_per_epoch,
        **dict(cfg.params),
    )
    return FactorLR(optimizer, with_warmup(main, warmup), main)


class FactorLR(torch.optim.lr_scheduler.LambdaLR):
    """``LambdaLR`` whose state is only the step count (the factor is rebuilt from config;
    a stateful factor such as ``plateau`` saves its own ``state_dict``)."""

    def __init__(self, optimizer: torch.optim.Optimizer, fn: Factor, factor: Factor) -> None:
        self.factor = factor
        super().__init__(optimizer, fn)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.pop("factor", None)
        state["lr_lambdas"] = [None] * len(self.lr_lambdas)
        return state


def with_warmup(main: Factor, warmup_steps: int) -> Factor:
    """Linear warm-up from 1/warmup_steps to 1, then ``main`` counted from the warm-up's end."""
    if warmup_steps <= 0:
        return main

    def factor(t: int) -> float:
        if t < warmup_steps:
            return (t + 1) / warmup_steps
        return main(t - warmup_steps)

    return factor


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name}: expected a value > 0, found {value}")


@SCHEDULES.register("constant")
def constant(*, total_steps: int, steps_per_epoch: int) -> Factor:
    """Constant learning rate."""
    return lambda t: 1.0


@SCHEDULES.register("step")
def step(
    *, total_steps: int, steps_per_epoch: int, step_epochs: float = 5.0, gamma: float = 0.5
) -> Factor:
    """Multiply by gamma every step_epochs epochs (book example: halve every 5 epochs)."""
    _positive("step_epochs", step_epochs)
    _positive("gamma", gamma)
    period = max(1, round(step_epochs * steps_per_epoch))
    return lambda t: gamma ** (t // period)


@SCHEDULES.register("multistep")
def multistep(
    *,
    total_steps: int,
    steps_per_epoch: int,
    milestones: list[float] | None = None,
    gamma: float = 0.1,
) -> Factor:
    """Multiply by gamma at each milestone epoch (default: at 50% and 75% of training)."""
    _positive("gamma", gamma)
    if milestones is None:
        steps = [total_steps // 2, (3 * total_steps) // 4]
    else:
        if any(not isinstance(m, (int, float)) or m <= 0 for m in milestones):
            raise ValueError(f"milestones: expected positive epoch numbers, found {milestones}")
        steps = sorted(round(m * steps_per_epoch) for m in milestones)
    return lambda t: gamma ** sum(t >= s for s in steps)


@SCHEDULES.register("exponential")
def exponential(*, total_steps: int, steps_per_epoch: int, gamma: float = 0.9) -> Factor:
    """lr_0 * gamma^epoch, evaluated smoothly per iteration (§11.2.2)."""
    _positive("gamma", gamma)
    return lambda t: gamma ** (t / steps_per_epoch)


@SCHEDULES.register("inverse_time")
def inverse_time(*, total_steps: int, steps_per_epoch: int, k: float = 0.5) -> Factor:
    """1/t decay, lr_0 / (1 + k * epoch) (§11.2.2)."""
    if k < 0:
        raise ValueError(f"k: expected a value >= 0, found {k}")
    return lambda t: 1.0 / (1.0 + k * t / steps_per_epoch)


@SCHEDULES.register("cosine")
def cosine(*, total_steps: int, steps_per_epoch: int, min_factor: float = 0.0) -> Factor:
    """Cosine annealing from lr_0 to min_factor * lr_0 over the run (Loshchilov & Hutter)."""
    if not 0 <= min_factor <= 1:
        raise ValueError(f"min_factor: expected a value in [0, 1], found {min_factor}")

    def factor(t: int) -> float:
        progress = min(t, total_steps) / total_steps
        return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


@SCHEDULES.register("cosine_restarts")
def cosine_restarts(*, total_steps: int, steps_per_epoch: int, cycles: int = 5) -> Factor:
    """Cyclic cosine of snapshot ensembles (eq. 13.1): restart every ceil(T/M) iterations."""
    if cycles < 1:
        raise ValueError(f"cycles: expected an integer >= 1, found {cycles}")
    period = math.ceil(total_steps / cycles)
    # Eq. 13.1 counts t from 1: alpha(t) = a0/2 * (cos(pi * mod(t-1, ceil(T/M)) / ceil(T/M)) + 1)
    return lambda t: 0.5 * (math.cos(math.pi * (t % period) / period) + 1)


@SCHEDULES.register("onecycle")
def onecycle(
    *,
    total_steps: int,
    steps_per_epoch: int,
    pct_start: float = 0.25,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> Factor:
    """One-cycle (Smith 2018): cosine rise from lr/div_factor to lr, then cosine fall."""
    if not 0 < pct_start < 1:
        raise ValueError(f"pct_start: expected a value in (0, 1), found {pct_start}")
    _positive("div_factor", div_factor)
    _positive("final_div_factor", final_div_factor)
    up = max(1, round(pct_start * total_steps))
    start, end = 1.0 / div_factor, 1.0 / (div_factor * final_div_factor)

    def anneal(a: float, b: float, frac: float) -> float:
        return b + (a - b) * 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))

    def factor(t: int) -> float:
        if t < up:
            return anneal(start, 1.0, t / up)
        return anneal(1.0, end, (t - up) / max(1, total_steps - up))

    return factor


class PlateauFactor:
    """Reduce-on-plateau as a factor: multiply by ``factor`` when the watched metric has not
    improved for more than ``patience`` epochs (handbook §11.2.2's "reduce when the validation
    curve flattens"). The training run feeds it one metric value per evaluated epoch."""

    def __init__(self, patience: int, factor: float, min_factor: float, threshold: float):
        self.patience, self.factor = patience, factor
        self.min_factor, self.threshold = min_factor, threshold
        self.current, self.best, self.bad = 1.0, None, 0

    def __call__(self, t: int) -> float:
        return self.current

    def observe(self, value: float) -> None:
        if self.best is None or value < self.best * (1 - self.threshold):
            self.best, self.bad = value, 0
            return
        self.bad += 1
        if self.bad > self.patience:
            self.current = max(self.min_factor, self.current * self.factor)
            self.bad = 0

    def state_dict(self) -> dict:
        return {"current": self.current, "best": self.best, "bad": self.bad}

    def load_state_dict(self, state: dict) -> None:
        self.current, self.best, self.bad = state["current"], state["best"], state["bad"]


@SCHEDULES.register("plateau")
def plateau(
    *,
    total_steps: int,
    steps_per_epoch: int,
    patience: int = 2,
    factor: float = 0.5,
    min_factor: float = 1e-3,
    threshold: float = 1e-4,
) -> Factor:
    """Reduce on plateau: x factor 0.5 after patience 2 epochs without val (or train) loss gain."""
    if patience < 0:
        raise ValueError(f"patience: expected >= 0, found {patience}")
    if not 0 < factor < 1:
        raise ValueError(f"factor: expected a value in (0, 1), found {factor}")
    return PlateauFactor(patience, factor, min_factor, threshold)
