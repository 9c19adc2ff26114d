"""Geometric augmentations on whole batches: flips, crops, scaling, rotation, translation.

Handbook §5.1. Crops, scaling, rotation and translation build one affine matrix per image and
resample the whole batch with a single ``grid_sample`` call (see ``augment_core.warp``).
Pixels that come from outside the image are filled with 0, which is the channel mean after
the loader's normalisation (or copied from the border/reflected, if asked).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from cnnlab.data.augment_core import (
    AUGMENTATIONS,
    INTERPOLATIONS,
    PADDING_MODES,
    IndexedOp,
    Op,
    apply_where,
    between,
    check,
    check_choice,
    check_prob,
    check_range,
    chosen,
    pick,
    uniform,
    warp,
)

__all__ = ["sample_square_boxes"]

BOOK_SCALES = (0.8, 0.9, 1.1, 1.2, 1.3)  # §5.1
BOOK_ANGLES = (-30.0, -15.0, 15.0, 30.0)  # §5.1, degrees


@AUGMENTATIONS.register("hflip")
def build_hflip(*, p: float = 0.5) -> Op:
    """Horizontal flip of each image with probability p (handbook §5.1)."""
    p = check_prob("hflip", p)
    return Op("hflip", lambda x, gen: apply_where(chosen(gen, p, x), x.flip(3), x), p=p)


@AUGMENTATIONS.register("alternating_flip")
def build_alternating_flip(*, p: float = 1.0) -> IndexedOp:
    """Derandomised horizontal flips: each image flips in every other epoch (airbench).

    Epoch 0 flips a pseudo-random half of the images (a fixed hash of the image's index and
    the loader's seed); epoch e flips exactly those images when e is even and the others when
    e is odd, so any two consecutive epochs show every image once in each orientation
    (Jordan 2024, "94% on CIFAR-10 in 3.29 seconds", §3.6; random flips repeat an orientation
    in half of the consecutive pairs). Handbook §5.1's flip, scheduled instead of drawn.
    With ``p < 1`` each image keeps to the schedule with probability p and stays unflipped
    otherwise.
    """
    p = check_prob("alternating_flip", p)

    def flip(x, gen, index, epoch, seed):
        if index is None or epoch is None:
            mask = chosen(gen, 0.5, x)  # no loader context (e.g. a preview): a random flip
        else:
            mask = (image_bits(index, seed or 0) ^ bool(epoch % 2)).to(x.device)
        if p < 1.0:
            mask = mask & chosen(gen, p, x)
        return apply_where(mask.to(x.device), x.flip(3), x)

    return IndexedOp("alternating_flip", flip, p=p)


def image_bits(index: torch.Tensor, seed: int) -> torch.Tensor:
    """One pseudo-random bit per image index (bool, same shape), fixed by ``seed``.

    A 32-bit integer hash (multiply-xorshift rounds, constants of Wang / murmur3's finaliser)
    evaluated in int64 with every product kept below 2^63, so it is exact on every device.
    """
    mask32 = 0xFFFFFFFF
    # index < 2^30 and seed < 2^24 keep the first products below 2^62 and 2^56
    h = (index.to(torch.int64) & 0x3FFFFFFF) * 0x9E3779B1 + (seed & 0xFFFFFF) * 0x85EBCA77
    h = h & mask32
    for _ in range(2):
        h = ((h ^ (h >> 16)) * 0x045D9F3B) & mask32
    return ((h ^ (h >> 16)) & 1).bool()


@AUGMENTATIONS.register("vflip")
def build_vflip(*, p: float = 0.5) -> Op:
    """Vertical flip with probability p (§5.1 footnote: wrong for faces, upright objects)."""
    p = check_prob("vflip", p)
    return Op("vflip", lambda x, gen: apply_where(chosen(gen, p, x), x.flip(2), x), p=p)


@AUGMENTATIONS.register("random_crop")
def build_random_crop(*, padding: int = 4, padding_mode: str = "zeros", p: float = 1.0) -> Op:
    """Pad by ``padding`` pixels (zeros = the mean, or reflect), then crop back at a random place.

    The classic CIFAR recipe; the crop keeps the original size, so it shifts the image by up
    to ``padding`` pixels with exact (uninterpolated) pixel values.
    """
    name = "random_crop"
    check(
        isinstance(padding, int) and padding >= 0,
        name,
        f"padding must be an int >= 0, got {padding!r}",
    )
    check_choice(name, "padding_mode", padding_mode, ("zeros", "reflect"))
    p = check_prob(name, p)

    def crop(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        b, c, h, w = x.shape
        if padding == 0:
            return x
        if padding_mode == "reflect" and padding >= min(h, w):
            raise ValueError(
                f"random_crop: reflect padding {padding} needs images larger than "
                f"{padding}x{padding}, got {h}x{w}"
            )
        mode = "reflect" if padding_mode == "reflect" else "constant"
        padded = F.pad(x, (padding,) * 4, mode=mode)  # (B, C, H+2p, W+2p)
        span = 2 * padding + 1
        oy = (uniform(gen, (b,), x) * span).long().clamp_(max=span - 1)
        ox = (uniform(gen, (b,), x) * span).long().clamp_(max=span - 1)
        keep = ~chosen(gen, p, x)
        oy[keep], ox[keep] = padding, padding  # the centred crop is the identity
        wp = w + 2 * padding
        rows = oy[:, None] + torch.arange(h, device=x.device)  # (B, H)
        cols = ox[:, None] + torch.arange(w, device=x.device)  # (B, W)
        flat = (rows[:, :, None] * wp + cols[:, None, :]).view(b, 1, h * w).expand(b, c, h * w)
        # (B, C, (H+2p)*(W+2p)) gathered at (B, C, H*W) -> (B, C, H, W)
        return padded.reshape(b, c, -1).gather(2, flat).view(b, c, h, w)

    return Op(name, crop, padding=padding, padding_mode=padding_mode, p=p)


def sample_square_boxes(
    gen: torch.Generator, n: int, h: int, w: int, scale: tuple[float, float], like: torch.Tensor
) -> torch.Tensor:
    """Random square boxes ``(top, left, side)`` in pixels, float (n, 3), inside an h x w image.

    The side is ``s * min(h, w)`` with s uniform in ``scale`` (the factor applies to the side
    length, handbook E.3 item 27); the position is uniform over all places the box fits.
    """
    side = between(gen, n, scale[0], scale[1], like) * min(h, w)
    top = uniform(gen, (n,), like) * (h - side)
    left = uniform(gen, (n,), like) * (w - side)
    return torch.stack([top, left, side], dim=1)


@AUGMENTATIONS.register("random_square_crop")
def build_random_square_crop(
    *, scale: Sequence[float] = (0.8, 0.9), p: float = 1.0, interpolation: str = "bilinear"
) -> Op:
    """Square crop of 0.8-0.9 of the side at a random place, resized back (handbook §5.1)."""
    name = "random_square_crop"
    lo, hi = check_range(name, "scale", scale, 0.0, 1.0, closed=True)
    check(lo > 0, name, f"scale must be > 0, got {scale!r}")
    check_choice(name, "interpolation", interpolation, INTERPOLATIONS)
    p = check_prob(name, p)

    def crop(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        b, _, h, w = x.shape
        top, left, side = sample_square_boxes(gen, b, h, w, (lo, hi), x).unbind(1)
        theta = x.new_zeros(b, 2, 3)
        # Box in normalised coordinates: centre c and half-size s/dim (edges at -1 and 1).
        theta[:, 0, 0], theta[:, 1, 1] = side / w, side / h
        theta[:, 0, 2] = (2 * left + side) / w - 1
        theta[:, 1, 2] = (2 * top + side) / h - 1
        # "border": the outermost sample points may fall a fraction of a pixel outside the
        # image; clamping keeps the mean fill from bleeding into a crop at the edge.
        mask = chosen(gen, p, x)
        return warp(x, theta, mask, padding_mode="border", interpolation=interpolation)

    return Op(name, crop, scale=(lo, hi), p=p, interpolation=interpolation)


def _affine(x: torch.Tensor, a: torch.Tensor, tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    """theta (B, 2, 3) from 2x2 parts ``a`` (B, 2, 2) and normalised shifts."""
    return torch.cat([a, torch.stack([tx, ty], dim=1)[:, :, None]], dim=2).to(x.dtype)


def _factors(name: str, key: str, values: Sequence[float], continuous: bool) -> tuple[float, ...]:
    ok = isinstance(values, Sequence) and len(values) > 0
    ok = ok and all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)
    check(ok, name, f"{key} must be a non-empty list of numbers, got {values!r}")
    if continuous:
        return (float(min(values)), float(max(values)))
    return tuple(float(v) for v in values)


@AUGMENTATIONS.register("scale")
def build_scale(
    *,
    factors: Sequence[float] = BOOK_SCALES,
    continuous: bool = False,
    p: float = 1.0,
    padding_mode: str = "zeros",
    interpolation: str = "bilinear",
) -> Op:
    """Zoom about the centre by a factor from ``factors`` (§5.1: 0.8, 0.9, 1.1, 1.2, 1.3).

    The output keeps its size: a factor above 1 enlarges the content (its rim is cut off), one
    below 1 shrinks it inside a frame of fill. ``continuous`` draws uniformly between the
    smallest and largest factor instead of from the list.
    """
    name = "scale"
    values = _factors(name, "factors", factors, continuous)
    check(min(values) > 0, name, f"factors must be > 0, got {factors!r}")
    check_choice(name, "padding_mode", padding_mode, PADDING_MODES)
    check_choice(name, "interpolation", interpolation, INTERPOLATIONS)
    p = check_prob(name, p)

    def zoom(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        b = x.shape[0]
        f = between(gen, b, *values, x) if continuous else pick(gen, b, values, x)
        a = torch.diag_embed(torch.stack([1 / f, 1 / f], dim=1))  # (B, 2, 2)
        theta = _affine(x, a, f.new_zeros(b), f.new_zeros(b))
        mask = chosen(gen, p, x)
        return warp(x, theta, mask, padding_mode=padding_mode, interpolation=interpolation)

    return Op(name, zoom, factors=values, continuous=continuous, p=p, padding_mode=padding_mode)


@AUGMENTATIONS.register("rotate")
def build_rotate(
    *,
    angles: Sequence[float] = BOOK_ANGLES,
    continuous: bool = False,
    p: float = 1.0,
    padding_mode: str = "zeros",
    interpolation: str = "bilinear",
) -> Op:
    """Rotate about the centre by an angle in degrees from ``angles`` (§5.1: ±15°, ±30°).

    Positive angles turn the picture counter-clockwise as displayed (angle 90 equals
    ``torch.rot90(x, 1, dims=(2, 3))`` on square images). ``continuous`` draws uniformly
    between the smallest and largest angle.
    """
    name = "rotate"
    values = _factors(name, "angles", angles, continuous)
    check_choice(name, "padding_mode", padding_mode, PADDING_MODES)
    check_choice(name, "interpolation", interpolation, INTERPOLATIONS)
    p = check_prob(name, p)

    def rotate(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        b, _, h, w = x.shape
        deg = between(gen, b, *values, x) if continuous else pick(gen, b, values, x)
        rad = deg.double().deg2rad()
        cos, sin = rad.cos(), rad.sin()
        # Snap cos/sin of multiples of 90 degrees to exact 0/±1 so those turns are exact.
        cos = torch.where((cos - cos.round()).abs() < 1e-9, cos.round(), cos)
        sin = torch.where((sin - sin.round()).abs() < 1e-9, sin.round(), sin)
        # Rotation in pixel units, rescaled to normalised x (width) and y (height) axes.
        a = torch.stack(
            [torch.stack([cos, -sin * h / w], 1), torch.stack([sin * w / h, cos], 1)], 1
        )  # (B, 2, 2)
        zero = deg.new_zeros(b)
        mask = chosen(gen, p, x)
        return warp(x, _affine(x, a.to(x.dtype), zero, zero), mask,
                    padding_mode=padding_mode, interpolation=interpolation)  # fmt: skip

    return Op(name, rotate, angles=values, continuous=continuous, p=p, padding_mode=padding_mode)


@AUGMENTATIONS.register("translate")
def build_translate(
    *,
    max_pixels: float = 2.0,
    integer: bool = True,
    p: float = 1.0,
    padding_mode: str = "zeros",
    interpolation: str = "bilinear",
) -> Op:
    """Shift each image by up to ``max_pixels`` along each axis (whole pixels if ``integer``)."""
    name = "translate"
    ok = isinstance(max_pixels, (int, float)) and 0 <= max_pixels < math.inf
    check(ok, name, f"max_pixels must be a number >= 0, got {max_pixels!r}")
    check_choice(name, "padding_mode", padding_mode, PADDING_MODES)
    check_choice(name, "interpolation", interpolation, INTERPOLATIONS)
    p = check_prob(name, p)
    m = float(max_pixels)

    def shift(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        b, _, h, w = x.shape
        dx, dy = between(gen, b, -m, m, x), between(gen, b, -m, m, x)
        if integer:
            dx, dy = dx.round(), dy.round()
        eye = torch.eye(2, device=x.device).expand(b, 2, 2)
        # Content moves by (+dx, +dy) pixels, so each output pixel reads from (-dx, -dy).
        theta = _affine(x, eye, -2 * dx / w, -2 * dy / h)
        mask = chosen(gen, p, x)
        return warp(x, theta, mask, padding_mode=padding_mode, interpolation=interpolation)

    return Op(name, shift, max_pixels=m, integer=integer, p=p, padding_mode=padding_mode)
