"""Colour augmentations on whole batches: RGB and HSV jitter, Fancy PCA.

Handbook §5.1 (colour jittering in RGB or HSV) and §5.2.1 (Fancy PCA, Krizhevsky et al. 2012).
The loader hands over normalised batches, ``(pixels - mean) / std``; colour operations that
need pixels in [0, 1] undo that with the normaliser's ``norm_mean``/``norm_std`` (passed by
``build_augmentation``), work on pixels, clamp to [0, 1] and normalise again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from cnnlab.data.augment_core import (
    AUGMENTATIONS,
    Op,
    apply_where,
    between,
    check,
    check_prob,
    chosen,
    constant,
    from_pixels,
    normal,
    stats,
    to_pixels,
)

__all__ = ["FancyPCA", "hsv_to_rgb", "rgb_to_hsv"]


def rgb_to_hsv(rgb: torch.Tensor) -> torch.Tensor:
    """RGB (B, 3, H, W) in [0, 1] -> HSV with hue, saturation and value all in [0, 1]."""
    r, g, b = rgb.unbind(1)
    vmax, vmin = rgb.amax(1), rgb.amin(1)
    delta = vmax - vmin
    sat = torch.where(vmax > 0, delta / vmax.clamp_min(1e-12), torch.zeros_like(vmax))
    d = delta.clamp_min(1e-12)
    # Hue sector by which channel is largest (ties resolve in the order r, g, b).
    hue = torch.where(
        vmax == r, (g - b) / d, torch.where(vmax == g, 2 + (b - r) / d, 4 + (r - g) / d)
    )
    hue = torch.where(delta > 0, (hue / 6) % 1.0, torch.zeros_like(hue))
    return torch.stack([hue, sat, vmax], dim=1)


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """HSV (B, 3, H, W) in [0, 1] -> RGB in [0, 1] (the inverse of :func:`rgb_to_hsv`)."""
    h, s, v = hsv.unbind(1)
    # Channel n in (r, g, b) = (5, 3, 1): v - v*s*clamp(min(k, 4-k), 0, 1), k = (n + 6h) mod 6.
    out = []
    for n in (5.0, 3.0, 1.0):
        k = (n + 6 * h) % 6
        out.append(v - v * s * torch.minimum(k, 4 - k).clamp(0, 1))
    return torch.stack(out, dim=1)


def _factor(gen: torch.Generator, n: int, amount: float, x: torch.Tensor) -> torch.Tensor:
    """Per-image factor uniform in [1 - amount, 1 + amount], shaped (B, 1, 1)."""
    return between(gen, n, 1 - amount, 1 + amount, x).view(n, 1, 1).to(x.dtype)


def _amount(name: str, key: str, value: float, high: float = 1.0) -> float:
    ok = isinstance(value, (int, float)) and 0 <= value <= high
    check(ok, name, f"{key} must be a number in [0, {high}], got {value!r}")
    return float(value)


def _need_rgb(name: str, norm_mean: Sequence[float] | None) -> None:
    if norm_mean is not None:
        check(len(norm_mean) == 3, name, f"needs RGB images (3 channels), got {len(norm_mean)}")


def _rgb_batch(name: str, x: torch.Tensor) -> None:
    if x.shape[1] != 3:
        raise ValueError(f"augmentation {name!r} needs RGB images (3 channels), got {x.shape[1]}")


@AUGMENTATIONS.register("color_jitter_rgb")
def build_color_jitter_rgb(
    *,
    brightness: float = 0.2,
    contrast: float = 0.2,
    saturation: float = 0.2,
    p: float = 1.0,
    norm_mean: Sequence[float] | None = None,
    norm_std: Sequence[float] | None = None,
) -> Op:
    """Random brightness, contrast and saturation changes in RGB (handbook §5.1).

    Each factor is uniform in [1 - amount, 1 + amount], applied in that order: brightness
    scales the pixels, contrast scales their distance to the image's mean grey level,
    saturation their distance to each pixel's grey value (a no-op for grey images).
    """
    name = "color_jitter_rgb"
    bri = _amount(name, "brightness", brightness)
    con = _amount(name, "contrast", contrast)
    sat = _amount(name, "saturation", saturation)
    p = check_prob(name, p)
    mean0, std0 = norm_mean, norm_std

    def jitter(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        b, c = x.shape[:2]
        m, s = stats(mean0 or (0.0,) * c, std0 or (1.0,) * c, x)
        px = to_pixels(x, m, s)
        px = px * _factor(gen, b, bri, x)[:, None]
        weights = constant([0.299, 0.587, 0.114] if c == 3 else [1 / c] * c, x.device)
        grey = (px * weights.view(1, c, 1, 1).to(x.dtype)).sum(1, keepdim=True)  # (B, 1, H, W)
        level = grey.mean(dim=(2, 3), keepdim=True)
        px = level + (px - level) * _factor(gen, b, con, x)[:, None]
        grey = (px * weights.view(1, c, 1, 1).to(x.dtype)).sum(1, keepdim=True)
        px = grey + (px - grey) * _factor(gen, b, sat, x)[:, None]
        out = from_pixels(px.clamp(0, 1), m, s)
        return apply_where(chosen(gen, p, x), out, x)

    return Op(name, jitter, brightness=bri, contrast=con, saturation=sat, p=p)


@AUGMENTATIONS.register("color_jitter_hsv")
def build_color_jitter_hsv(
    *,
    hue: float = 0.02,
    saturation: float = 0.3,
    value: float = 0.3,
    p: float = 1.0,
    norm_mean: Sequence[float] | None = None,
    norm_std: Sequence[float] | None = None,
) -> Op:
    """Shift hue slightly, scale saturation and value in HSV space (handbook §5.1); RGB only.

    ``hue`` is the largest shift as a fraction of the colour wheel (0.02 = 7.2 degrees);
    ``saturation`` and ``value`` scale S and V by factors uniform in [1 - a, 1 + a].
    """
    name = "color_jitter_hsv"
    dh = _amount(name, "hue", hue, 0.5)
    ds = _amount(name, "saturation", saturation)
    dv = _amount(name, "value", value)
    p = check_prob(name, p)
    _need_rgb(name, norm_mean)
    mean0, std0 = norm_mean, norm_std

    def jitter(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        _rgb_batch(name, x)
        b = x.shape[0]
        m, s = stats(mean0 or (0.0,) * 3, std0 or (1.0,) * 3, x)
        h, sat, val = rgb_to_hsv(to_pixels(x, m, s).clamp(0, 1)).unbind(1)
        h = (h + between(gen, b, -dh, dh, x).view(b, 1, 1).to(x.dtype)) % 1.0
        sat = (sat * _factor(gen, b, ds, x)).clamp(0, 1)
        val = (val * _factor(gen, b, dv, x)).clamp(0, 1)
        out = from_pixels(hsv_to_rgb(torch.stack([h, sat, val], 1)), m, s)
        return apply_where(chosen(gen, p, x), out, x)

    return Op(name, jitter, hue=dh, saturation=ds, value=dv, p=p)


@dataclass(frozen=True)
class FancyPCA:
    """PCA of the training set's RGB pixel values (Krizhevsky et al. 2012; handbook §5.2.1).

    ``eigvals`` (3,) are the eigenvalues in decreasing order and ``eigvecs`` (3, 3) holds the
    matching eigenvectors p_i as columns, for pixel values scaled to [0, 1].
    """

    eigvals: torch.Tensor
    eigvecs: torch.Tensor

    @staticmethod
    def fit(images: torch.Tensor, chunk: int = 2048) -> FancyPCA:
        """Fit on training images: uint8 (N, 3, H, W) (divided by 255) or float in [0, 1]."""
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[0] == 0:
            raise ValueError(
                f"fancy_pca: expected RGB training images (N, 3, H, W), got {tuple(images.shape)}"
            )
        total = torch.zeros(3, dtype=torch.float64)
        outer = torch.zeros(3, 3, dtype=torch.float64)
        count = 0
        for start in range(0, images.shape[0], chunk):
            part = images[start : start + chunk].to("cpu", torch.float64)
            if images.dtype == torch.uint8:
                part = part / 255
            px = part.permute(1, 0, 2, 3).reshape(3, -1)  # (n, 3, H, W) -> (3, n*H*W)
            total += px.sum(1)
            outer += px @ px.T
            count += px.shape[1]
        mu = total / count
        cov = outer / count - torch.outer(mu, mu)
        vals, vecs = torch.linalg.eigh(cov)  # ascending
        return FancyPCA(vals.flip(0).clamp_min(0).float(), vecs.flip(1).float())

    def offsets(self, alpha: torch.Tensor) -> torch.Tensor:
        """Per-image RGB offset ``P [a1 l1, a2 l2, a3 l3]^T`` for alpha (B, 3) -> (B, 3)."""
        lam = self.eigvals.to(alpha.device, alpha.dtype)
        return (alpha * lam) @ self.eigvecs.to(alpha.device, alpha.dtype).T


@AUGMENTATIONS.register("fancy_pca")
def build_fancy_pca(
    *,
    alpha_std: float = 0.1,
    p: float = 1.0,
    clip: bool = False,
    norm_mean: Sequence[float] | None = None,
    norm_std: Sequence[float] | None = None,
    train_images: torch.Tensor | None = None,
) -> Op:
    """Fancy PCA colour noise: add P [a_i l_i] to every pixel, a_i ~ N(0, 0.1) (§5.2.1).

    The PCA is fitted once on the training images (pixels in [0, 1]); l_i are eigenvalues
    (variances), as the book writes. Alpha is drawn afresh for each image of each batch.
    ``clip`` clamps the result to valid pixels (off by default, as in the original).
    """
    name = "fancy_pca"
    check(isinstance(alpha_std, (int, float)) and alpha_std >= 0, name,
          f"alpha_std must be a number >= 0, got {alpha_std!r}")  # fmt: skip
    p = check_prob(name, p)
    _need_rgb(name, norm_mean)
    check(train_images is not None, name, "needs the training images to fit its PCA")
    assert train_images is not None
    shape = tuple(train_images.shape)
    check(len(shape) == 4 and shape[1] == 3 and shape[0] > 0, name,
          f"needs RGB training images (N, 3, H, W), got {shape}")  # fmt: skip
    pca = FancyPCA.fit(train_images)
    mean0, std0 = norm_mean or (0.0,) * 3, norm_std or (1.0,) * 3

    def noise(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        _rgb_batch(name, x)
        b = x.shape[0]
        alpha = normal(gen, (b, 3), x) * alpha_std
        delta = pca.offsets(alpha).to(x.dtype).view(b, 3, 1, 1)  # pixel units
        m, s = stats(mean0, std0, x)
        out = x + delta / s
        if clip:
            out = from_pixels(to_pixels(out, m, s).clamp(0, 1), m, s)
        return apply_where(chosen(gen, p, x), out, x)

    op = Op(name, noise, alpha_std=float(alpha_std), p=p, clip=clip)
    op.pca = pca  # type: ignore[attr-defined]  # the fitted PCA, for inspection and tests
    return op
