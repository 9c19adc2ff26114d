"""Batched, seeded data augmentation for in-memory image tensors (handbook Ch. 5).

Every augmentation is built from the registry ``AUGMENTATIONS`` and is a callable
``aug(x, generator)`` on a float batch ``(B, C, H, W)`` that returns a tensor of the same shape,
dtype and device; all randomness comes from the generator, so the same generator seed gives
the same output. A pipeline is a config list::

    [{"name": "random_crop", "padding": 2}, {"name": "hflip"}, "random_erasing"]

turned into one callable by :func:`build_augmentation`, which plugs into
``BatchLoader(transform=...)``.

Fill values: the loader normalises before it augments, so the value 0 used by padding,
zoom-out frames and erasing is the channel mean of the training set. Colour operations that
need [0, 1] pixels receive the normaliser's mean/std from :func:`build_augmentation`.

Geometric ops live in ``augment_geometric``, colour ops in ``augment_color``; erasing and the
pipeline builder live here.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from cnnlab.data import augment_color, augment_geometric
from cnnlab.data.augment_color import FancyPCA, hsv_to_rgb, rgb_to_hsv
from cnnlab.data.augment_core import (
    AUGMENTATIONS,
    Augmentation,
    Op,
    between,
    check,
    check_prob,
    check_range,
    chosen,
    normal,
    uniform,
)
from cnnlab.data.augment_geometric import sample_square_boxes
from cnnlab.registry import RegistryError

__all__ = [
    "AUGMENTATIONS",
    "Augmentation",
    "Compose",
    "FancyPCA",
    "build_augmentation",
    "chain_transforms",
    "hsv_to_rgb",
    "parse_pipeline",
    "rgb_to_hsv",
    "sample_square_boxes",
    "validate_augmentation",
]

_REGISTERED = (augment_color, augment_geometric)  # importing them registers their builders
_CONTEXT = ("norm_mean", "norm_std", "train_images")  # filled in by build_augmentation


def _box_mask(
    top: torch.Tensor, left: torch.Tensor, bh: torch.Tensor, bw: torch.Tensor, h: int, w: int
) -> torch.Tensor:
    """Bool (B, 1, H, W): rows [top, top+bh) x cols [left, left+bw) of each image."""
    rows = torch.arange(h, device=top.device).view(1, h, 1)
    cols = torch.arange(w, device=top.device).view(1, 1, w)
    inside_r = (rows >= top.view(-1, 1, 1)) & (rows < (top + bh).view(-1, 1, 1))
    inside_c = (cols >= left.view(-1, 1, 1)) & (cols < (left + bw).view(-1, 1, 1))
    return (inside_r & inside_c)[:, None]


def _fill(x: torch.Tensor, mask: torch.Tensor, value: Any, gen: torch.Generator) -> torch.Tensor:
    fill = normal(gen, x.shape, x).to(x.dtype) if value == "random" else float(value)
    return torch.where(mask, fill, x)


def _check_value(name: str, value: Any) -> None:
    ok = value == "random" or (isinstance(value, (int, float)) and math.isfinite(value))
    check(ok, name, f"value must be a number or 'random', got {value!r}")


@AUGMENTATIONS.register("random_erasing")
def build_random_erasing(
    *,
    p: float = 0.5,
    area: Sequence[float] = (0.02, 0.33),
    aspect: Sequence[float] = (0.3, 3.3),
    value: float | str = 0.0,
) -> Op:
    """Erase one random rectangle per image (Zhong et al. 2020, Random Erasing).

    Its area is a fraction of the image uniform in ``area`` and its height/width ratio is
    log-uniform in ``aspect``; a rectangle taller or wider than the image is clipped to it and
    widened/heightened to keep the area. It is filled with ``value`` (0 = the mean after
    normalisation) or, with ``"random"``, with N(0, 1) noise in normalised units.
    """
    name = "random_erasing"
    a_lo, a_hi = check_range(name, "area", area, 0.0, 1.0)
    r_lo, r_hi = check_range(name, "aspect", aspect, 0.0, math.inf, closed=False)
    _check_value(name, value)
    p = check_prob(name, p)

    def erase(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        b, _, h, w = x.shape
        target = between(gen, b, a_lo, a_hi, x) * (h * w)  # pixels to erase
        ratio = between(gen, b, math.log(r_lo), math.log(r_hi), x).exp()
        bh = (target * ratio).sqrt().clamp(max=h)
        bw = (target / bh.clamp_min(1e-6)).clamp(max=w)
        bh, bw = bh.round().clamp(1, h), bw.round().clamp(1, w)
        top = (uniform(gen, (b,), x) * (h - bh + 1)).floor()
        left = (uniform(gen, (b,), x) * (w - bw + 1)).floor()
        mask = _box_mask(top, left, bh, bw, h, w) & chosen(gen, p, x).view(b, 1, 1, 1)
        return _fill(x, mask, value, gen)

    return Op(name, erase, p=p, area=(a_lo, a_hi), aspect=(r_lo, r_hi), value=value)


@AUGMENTATIONS.register("cutout")
def build_cutout(*, size: int = 8, p: float = 1.0, value: float | str = 0.0) -> Op:
    """Blank a ``size`` x ``size`` square centred on a random pixel (DeVries & Taylor 2017).

    The square may stick out of the image and is clipped there, as in the paper.
    """
    name = "cutout"
    check(isinstance(size, int) and size >= 1, name, f"size must be an int >= 1, got {size!r}")
    _check_value(name, value)
    p = check_prob(name, p)

    def cut(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        b, _, h, w = x.shape
        cy = (uniform(gen, (b,), x) * h).floor()
        cx = (uniform(gen, (b,), x) * w).floor()
        side = torch.full_like(cy, float(size))
        mask = _box_mask(cy - size // 2, cx - size // 2, side, side, h, w)
        mask = mask & chosen(gen, p, x).view(b, 1, 1, 1)
        return _fill(x, mask, value, gen)

    return Op(name, cut, size=size, p=p, value=value)


class Compose:
    """Apply augmentations in order, all drawing from the one generator (deterministic).

    Ops that need the batch's image indices (``uses_index``, e.g. alternating flips) get the
    ``index``/``epoch``/``seed`` the loader passes; the others are called as ``op(x, gen)``.
    """

    def __init__(self, ops: Sequence[Augmentation]) -> None:
        self.ops = list(ops)
        self.uses_index = any(getattr(op, "uses_index", False) for op in self.ops)

    def __call__(self, x: torch.Tensor, gen: torch.Generator, **where: Any) -> torch.Tensor:
        for op in self.ops:
            x = _call(op, x, gen, where)
        return x

    def __len__(self) -> int:
        return len(self.ops)

    def __repr__(self) -> str:
        return f"Compose([{', '.join(repr(op) for op in self.ops)}])"


def chain_transforms(*transforms: Any) -> Any:
    """One loader transform ``t(x, gen)`` running the given ones in order (None entries skipped).

    For a training loader use ``chain_transforms(augmentation, preprocess)``: augment the
    normalised images first (colour ops expect the normaliser's representation), then apply
    the fitted preprocessing, exactly as the evaluation loaders do. Returns None if empty.
    """
    parts = [t for t in transforms if t is not None and not (hasattr(t, "__len__") and len(t) == 0)]
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]

    def run(x: torch.Tensor, gen: torch.Generator, **where: Any) -> torch.Tensor:
        for t in parts:
            x = _call(t, x, gen, where)
        return x

    run.uses_index = any(getattr(t, "uses_index", False) for t in parts)  # type: ignore[attr-defined]
    return run


def _call(op: Any, x: torch.Tensor, gen: torch.Generator, where: dict[str, Any]) -> torch.Tensor:
    """``op(x, gen)``, plus the loader's index/epoch/seed for ops that use them."""
    return op(x, gen, **where) if where and getattr(op, "uses_index", False) else op(x, gen)


def _split_spec(spec: Any, index: int) -> tuple[str, dict[str, Any]]:
    """``"hflip"`` or ``{"name": "hflip", "p": 0.3}`` -> (name, options)."""
    if isinstance(spec, str):
        return spec, {}
    if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
        raise RegistryError(
            f"augmentation #{index + 1}: expected a name or a mapping with a 'name' key, "
            f"found {spec!r}"
        )
    options = {k: v for k, v in spec.items() if k != "name"}
    reserved = [k for k in options if k in _CONTEXT]
    if reserved:
        raise RegistryError(
            f"augmentation {spec['name']!r}: {', '.join(reserved)} cannot be set in a config; "
            "build_augmentation fills them in from the data"
        )
    return spec["name"], options


def build_augmentation(
    specs: Sequence[Any] | None,
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    train_images: torch.Tensor | None = None,
) -> Compose:
    """Turn a config list of augmentation specs into one ``aug(x, gen)`` callable.

    Args:
        specs: names or ``{"name": ..., **options}`` mappings, applied in order.
        mean, std: the loader's ``Normalizer`` statistics (pixels in [0, 1]); colour ops use
            them to work on pixels. None means the batches are plain [0, 1] pixels.
        train_images: the training split (uint8 or [0, 1] float), needed by ``fancy_pca``.

    Raises:
        RegistryError: an unknown name or option, or an option out of range.
    """
    if specs is None:
        return Compose([])
    if isinstance(specs, (str, Mapping)) or not isinstance(specs, Sequence):
        raise RegistryError(f"augmentation pipeline: expected a list of specs, found {specs!r}")
    context = {"norm_mean": mean, "norm_std": std, "train_images": train_images}
    ops = []
    for i, spec in enumerate(specs):
        name, options = _split_spec(spec, i)
        params = AUGMENTATIONS.parameters(name)  # raises on an unknown name
        AUGMENTATIONS.check_kwargs(name, options)
        extra = {k: v for k, v in context.items() if k in params}
        ops.append(AUGMENTATIONS.build(name, **options, **extra))
    return Compose(ops)


def validate_augmentation(specs: Sequence[Any] | None, *, channels: int = 3) -> None:
    """Check a pipeline's names and option values without any data (for config loading).

    Builds it against stand-in statistics for ``channels``-channel images; raises the same
    RegistryError as :func:`build_augmentation` would.
    """
    stand_in = torch.zeros(1, channels, 1, 1, dtype=torch.uint8)
    build_augmentation(specs, mean=(0.5,) * channels, std=(0.25,) * channels, train_images=stand_in)


def parse_pipeline(text: str | os.PathLike[str]) -> list[Any]:
    """A pipeline from a YAML file, inline YAML (``"[{name: hflip}, rotate]"``) or ``"a,b"``."""
    import yaml

    path = Path(text)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise RegistryError(f"augmentation pipeline file {path} does not exist")
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        if isinstance(data, Mapping) and "augment" in data:
            data = data["augment"]
    else:
        try:
            data = yaml.safe_load(str(text))
        except yaml.YAMLError as exc:
            raise RegistryError(
                f"augmentation pipeline {str(text)!r} is not valid YAML: {exc}"
            ) from None
        if isinstance(data, str):
            data = [part.strip() for part in data.split(",") if part.strip()]
    if data is None:
        return []
    if not isinstance(data, list):
        raise RegistryError(f"augmentation pipeline: expected a list, found {data!r}")
    return data
