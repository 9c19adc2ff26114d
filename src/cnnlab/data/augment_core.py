"""Shared pieces of the batched augmentations (handbook Ch. 5): registry, checks, draws, warps.

Every augmentation works on a whole float batch ``(B, C, H, W)`` on the training device and
draws its randomness from the ``torch.Generator`` it is given, so a batch's augmentation is a
pure function of (batch, generator seed). Random numbers are drawn on the generator's device
and moved to the batch's device, so a CPU generator also drives a batch on another device.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from cnnlab.registry import Registry, RegistryError

__all__ = [
    "AUGMENTATIONS",
    "Augmentation",
    "IndexedOp",
    "Op",
    "apply_where",
    "check",
    "constant",
    "pick",
    "uniform",
    "warp",
]

AUGMENTATIONS = Registry("augmentation")
# aug(x float (B, C, H, W), generator) -> tensor of the same shape, dtype and device.
Augmentation = Callable[[torch.Tensor, torch.Generator], torch.Tensor]

PADDING_MODES = ("zeros", "reflection", "border")
INTERPOLATIONS = ("bilinear", "nearest")


class Op:
    """A built augmentation: a named callable ``op(x, gen)`` that shows its options in repr."""

    uses_index = False  # see IndexedOp

    def __init__(self, name: str, fn: Augmentation, **options: Any) -> None:
        self.name, self.fn, self.options = name, fn, options

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return self.fn(x, gen)

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"{self.name}({opts})"


class IndexedOp(Op):
    """An augmentation that also needs to know which images it is given and when.

    The loader calls it as ``op(x, gen, index=idx, epoch=e, seed=s)``: ``idx`` (B,) are the
    images' positions in the training set, ``e`` the epoch and ``s`` the loader's seed, so the
    op can treat an image consistently across epochs (alternating flips). Called as plain
    ``op(x, gen)`` (e.g. ``cnnlab augment --show``) the three are None and the op falls back
    to a random draw from ``gen``.
    """

    uses_index = True

    def __call__(
        self,
        x: torch.Tensor,
        gen: torch.Generator,
        index: torch.Tensor | None = None,
        epoch: int | None = None,
        seed: int | None = None,
    ) -> torch.Tensor:
        return self.fn(x, gen, index, epoch, seed)


def check(ok: bool, name: str, message: str) -> None:
    """Raise a RegistryError ``augmentation 'name': message`` unless ``ok``."""
    if not ok:
        raise RegistryError(f"augmentation {name!r}: {message}")


def check_prob(name: str, p: float) -> float:
    check(isinstance(p, (int, float)) and 0.0 <= p <= 1.0, name, f"p must be in [0, 1], got {p!r}")
    return float(p)


def check_range(
    name: str, key: str, value: Any, low: float, high: float = math.inf, *, closed: bool = True
) -> tuple[float, float]:
    """A ``[lo, hi]`` pair (a bare number means ``[v, v]``) with ``low <= lo <= hi <= high``."""
    pair = (value, value) if isinstance(value, (int, float)) else value
    ok = isinstance(pair, Sequence) and len(pair) == 2
    ok = ok and all(isinstance(v, (int, float)) for v in pair)
    if ok:
        lo, hi = float(pair[0]), float(pair[1])
        ok = (low <= lo <= hi <= high) if closed else (low < lo <= hi < high)
    bounds = f"[{low}, {high}]" if closed else f"({low}, {high})"
    check(ok, name, f"{key} must be a number or a [low, high] pair inside {bounds}, got {value!r}")
    return float(pair[0]), float(pair[1])


def check_choice(name: str, key: str, value: Any, choices: Sequence[str]) -> str:
    check(value in choices, name, f"{key} must be one of {', '.join(choices)}; got {value!r}")
    return value


def uniform(gen: torch.Generator, shape: Sequence[int], like: torch.Tensor) -> torch.Tensor:
    """U[0, 1) numbers drawn with ``gen``, as float32 on ``like``'s device."""
    r = torch.rand(tuple(shape), generator=gen, device=gen.device)
    return r.to(like.device)


def normal(gen: torch.Generator, shape: Sequence[int], like: torch.Tensor) -> torch.Tensor:
    """N(0, 1) numbers drawn with ``gen``, as float32 on ``like``'s device."""
    r = torch.randn(tuple(shape), generator=gen, device=gen.device)
    return r.to(like.device)


def between(gen: torch.Generator, n: int, lo: float, hi: float, like: torch.Tensor) -> torch.Tensor:
    """``n`` numbers uniform in ``[lo, hi)``."""
    return lo + (hi - lo) * uniform(gen, (n,), like)


def constant(
    values: Sequence[float], device: torch.device, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """``values`` as a 1-D tensor on ``device``, made once per (values, device, dtype): a
    tensor built from Python numbers on a GPU is a blocking host-to-device copy, which per
    batch would stall the training loop (issue 23). Treat it as read-only."""
    return _constant(tuple(float(v) for v in values), torch.device(device), dtype)


@functools.lru_cache(maxsize=256)
def _constant(values: tuple[float, ...], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    with torch.inference_mode(False):  # usable in autograd later, whoever made it first
        return torch.tensor(values, dtype=dtype).to(device)


def pick(gen: torch.Generator, n: int, values: Sequence[float], like: torch.Tensor) -> torch.Tensor:
    """``n`` draws (with replacement) from the list ``values``."""
    table = constant(values, like.device)
    k = (uniform(gen, (n,), like) * len(values)).long().clamp_(max=len(values) - 1)
    return table[k]


def chosen(gen: torch.Generator, p: float, x: torch.Tensor) -> torch.Tensor:
    """Bool mask (B,): which samples the augmentation applies to (each with probability p)."""
    return uniform(gen, (x.shape[0],), x) < p


def apply_where(mask: torch.Tensor, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """Per-sample select: ``new`` where ``mask`` (B,) is set, else ``old`` (bit-exact)."""
    return torch.where(mask.view(-1, *([1] * (old.ndim - 1))), new, old)


def warp(
    x: torch.Tensor,
    theta: torch.Tensor,
    mask: torch.Tensor,
    *,
    padding_mode: str = "zeros",
    interpolation: str = "bilinear",
) -> torch.Tensor:
    """Resample every image with its own affine map in one batched ``grid_sample`` call.

    ``theta`` (B, 2, 3) maps output coordinates to input coordinates, both normalised to
    [-1, 1] (``align_corners=False``: -1 and 1 are the outer pixel edges). Samples outside
    ``mask`` are returned unchanged, bit for bit. Zero padding fills with 0, which is the
    channel mean once the loader has normalised the batch.
    """
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode=interpolation, padding_mode=padding_mode, align_corners=False)
    return apply_where(mask, out, x)


def to_pixels(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Undo the loader's normalisation: ``x * std + mean`` gives pixels in [0, 1]."""
    return x * std + mean


def from_pixels(p: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return (p - mean) / std


def stats(mean: Sequence[float], std: Sequence[float], x: torch.Tensor) -> tuple[Any, Any]:
    """The normaliser's mean/std as (1, C, 1, 1) tensors matching ``x``."""
    m = constant(mean, x.device, x.dtype).view(1, -1, 1, 1)
    s = constant(std, x.device, x.dtype).view(1, -1, 1, 1)
    if m.shape[1] != x.shape[1]:
        raise ValueError(
            f"the normaliser has {m.shape[1]} channel(s) but the batch has {x.shape[1]}"
        )
    return m, s
