"""Option checks and target helpers shared by the loss modules."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def check_classes(loss: str, num_classes: int, minimum: int = 2) -> int:
    """``num_classes`` if it is an int >= ``minimum``, else a ValueError naming the loss."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < minimum:
        raise ValueError(
            f"{loss}: num_classes must be an integer >= {minimum}, got {num_classes!r}"
        )
    return num_classes


def check_range(
    loss: str,
    option: str,
    value: object,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``float(value)`` if it lies in the interval, else a ValueError naming option and range."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    v = float(value) if ok else float("nan")  # type: ignore[arg-type]
    if ok and low is not None:
        ok = v > low if low_open else v >= low
    if ok and high is not None:
        ok = v < high if high_open else v <= high
    if not ok or v != v:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        raise ValueError(f"{loss}: {option} must be in {left}{lo}, {hi}{right}, got {value!r}")
    return v


def check_choice(loss: str, option: str, value: object, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(
            f"{loss}: {option} must be one of {', '.join(map(repr, choices))}; got {value!r}"
        )
    return str(value)


def as_float(t: torch.Tensor) -> torch.Tensor:
    """fp16/bf16 (autocast) -> fp32 for the loss arithmetic; fp32 and fp64 stay as they are."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def target_distribution(targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B, C) float targets: one-hot of class indices (B,), or a given (B, C) distribution."""
    if targets.dim() == 2:
        if targets.shape[1] != num_classes:
            raise ValueError(
                f"target distributions must have {num_classes} columns, got {tuple(targets.shape)}"
            )
        return as_float(targets)
    return F.one_hot(targets, num_classes).float()
