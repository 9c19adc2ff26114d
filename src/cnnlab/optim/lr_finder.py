"""Learning-rate range test (Smith 2017, "Cyclical Learning Rates", §3.3; Handbook §11.2.2).

Train for a few steps while the learning rate grows exponentially from ``start`` to ``end``, one
batch per step, and watch the loss: where it falls fastest is a good learning rate, and where it
blows up is too high. The model (and the task's state) are restored afterwards, so the test
leaves no trace; the caller's random-number state is left untouched too.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

#: Fraction of the sweep ignored at its start when looking for the steepest descent: there the
#: smoothed loss mostly reflects batch-to-batch noise, not the learning rate.
SKIP_START = 0.1


@dataclass
class LRFindResult:
    """One range test: the swept rates, raw and smoothed losses, and the suggested rate."""

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggestion: float
    reason: str
    diverged: bool = False


def _check(start: float, end: float, steps: int, smooth: float, diverge: float) -> None:
    if not (0 < start < end):
        raise ValueError(f"lr_find: need 0 < start < end, got start={start}, end={end}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
        raise ValueError(f"lr_find: steps must be an integer >= 2, got {steps!r}")
    if not 0 <= smooth < 1:
        raise ValueError(f"lr_find: smooth must be in [0, 1), got {smooth}")
    if not diverge > 1:
        raise ValueError(f"lr_find: diverge must be > 1, got {diverge}")


def _batches(batches: Iterable[Any]) -> Iterator[Any]:
    """Batches forever when ``batches`` can be iterated again (a list, a loader), else once."""
    it = iter(batches)
    restartable = it is not batches
    while True:
        yield from it
        if not restartable:
            return
        it = iter(batches)


def suggest_lr(lrs: list[float], smoothed: list[float]) -> tuple[float, str]:
    """The LR of steepest descent of the smoothed loss (vs log10 LR) before its minimum.

    The first ``SKIP_START`` (10%) of the points and the minimum itself are not candidates.
    Fallback, when that stretch has fewer than 3 points or never descends: the LR at the
    minimum divided by 10, but not below the first LR.
    """
    best = int(np.argmin(smoothed))
    skip = max(1, int(len(smoothed) * SKIP_START))
    if best - skip >= 3:
        log_lr = np.log10(np.asarray(lrs[: best + 1]))
        slope = np.gradient(np.asarray(smoothed[: best + 1]), log_lr)
        i = skip + int(np.argmin(slope[skip:best]))
        if slope[i] < 0:
            return lrs[i], "steepest descent of the smoothed loss"
    lr = max(lrs[0], lrs[best] / 10.0)
    return lr, "fallback: LR at the minimum smoothed loss / 10 (no clear descending stretch)"


def _set_lr(optimizer: torch.optim.Optimizer, lr: float, ratios: list[float]) -> None:
    for group, ratio in zip(optimizer.param_groups, ratios, strict=True):
        group["lr"] = lr * ratio


def _run(
    model: nn.Module,
    task: Any,
    optimizer: torch.optim.Optimizer,
    batches: Iterable[Any],
    lrs: np.ndarray,
    smooth: float,
    diverge: float,
) -> tuple[list[float], list[float], list[float], bool]:
    """The sweep itself: one batch per LR, bias-corrected exponential smoothing, early stop."""
    base = optimizer.param_groups[0]["lr"]
    ratios = [g["lr"] / base if base else 1.0 for g in optimizer.param_groups]
    device = next(model.parameters()).device
    out_lrs, losses, smoothed = [], [], []
    avg, best = 0.0, math.inf
    for i, (x, y) in zip(range(len(lrs)), _batches(batches), strict=False):
        _set_lr(optimizer, float(lrs[i]), ratios)
        loss, _ = task.training_step(model, x.to(device), y.to(device))
        value = float(loss.detach())
        if not math.isfinite(value):
            return out_lrs, losses, smoothed, True
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        task.after_step()
        avg = smooth * avg + (1 - smooth) * value
        s = avg / (1 - smooth ** (i + 1))  # bias correction: the average starts at 0
        out_lrs.append(float(lrs[i]))
        losses.append(value)
        smoothed.append(s)
        best = min(best, s)
        if s > diverge * best:
            return out_lrs, losses, smoothed, True
    return out_lrs, losses, smoothed, False


def lr_find(
    model: nn.Module,
    task: Any,
    make_optimizer: Callable[[nn.Module], torch.optim.Optimizer],
    batches: Iterable[Any],
    *,
    start: float = 1e-7,
    end: float = 10.0,
    steps: int = 100,
    smooth: float = 0.98,
    diverge: float = 4.0,
    seed: int = 0,
) -> LRFindResult:
    """LR range test: exponential sweep start=1e-7 .. end=10 over 100 steps (Smith 2017).

    Step i trains one batch at ``lr_i = start * (end/start)^(i/(steps-1))`` with ``task``
    (``task.training_step(model, x, y) -> (loss, logits)``, then ``task.after_step()``) and an
    optimiser from ``make_optimizer(model)``; groups whose LR differs from the first group's
    keep their ratio to it. Losses are smoothed exponentially (factor ``smooth``) with bias
    correction; the sweep stops when the smoothed loss exceeds ``diverge`` x its minimum or a
    loss is not finite. ``batches`` is re-iterated if it runs out (a list or a loader). The
    suggestion is the steepest descent of the smoothed loss against log LR before its minimum
    (see :func:`suggest_lr`). Model weights, buffers, training mode and the task's state are
    restored afterwards; the torch RNG is seeded with ``seed`` inside a fork, so runs repeat.
    """
    _check(start, end, steps, smooth, diverge)
    model_state = copy.deepcopy(model.state_dict())
    task_state = copy.deepcopy(task.state_dict()) if isinstance(task, nn.Module) else None
    was_training = model.training
    lrs = start * (end / start) ** (np.arange(steps) / (steps - 1))
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model.train()
            if isinstance(task, nn.Module):
                task.train()
            optimizer = make_optimizer(model)
            out_lrs, losses, smoothed, diverged = _run(
                model, task, optimizer, batches, lrs, smooth, diverge
            )
    finally:
        model.load_state_dict(model_state)
        if task_state is not None:
            task.load_state_dict(task_state)
        model.train(was_training)
    if not smoothed:
        raise ValueError(
            "lr_find: no step completed (no batches, or the first loss was not finite)"
        )
    suggestion, reason = suggest_lr(out_lrs, smoothed)
    return LRFindResult(out_lrs, losses, smoothed, suggestion, reason, diverged)


def plot_lr_find(result: LRFindResult, path: str | Path) -> Path:
    """Save the range test as a PNG: raw and smoothed loss against LR (log axis), suggestion."""
    from cnnlab.viz.png import figure_to_png, new_figure

    fig = new_figure(6.0, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(result.lrs, result.losses, color="#9ecae1", lw=1, label="loss")
    ax.plot(result.lrs, result.smoothed, color="#1f77b4", lw=2, label="smoothed loss")
    ax.axvline(
        result.suggestion, color="#d62728", ls="--", label=f"suggested {result.suggestion:.2g}"
    )
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_title("LR range test" + (" (stopped at divergence)" if result.diverged else ""))
    ax.legend(loc="best")
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(figure_to_png(fig))
    return out
