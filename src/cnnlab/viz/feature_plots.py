"""Figures for "looking inside" a network (Handbook §3.1.2-3.1.3): feature-map grids, top-k
images of a channel, class activation map overlays, activation sparsity, the distributed view.

Builders return a pyplot-free matplotlib ``Figure`` (render with ``figure_to_png``); overlays
are plain uint8 RGB arrays. Heat maps are drawn with the "jet" colour map over the grey or
colour image, scaled so the map's maximum is the hottest colour.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from cnnlab.viz.examples import to_rgb
from cnnlab.viz.png import encode_png, new_figure, scale_for, upscale
from cnnlab.viz.weights import filter_mosaic

HEAT = "jet"
MAPS = "viridis"


def _np(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def normalise(heat: Any) -> np.ndarray:
    """Negative values to 0, then divide by the maximum (an all-zero map stays zero)."""
    h = np.clip(np.nan_to_num(_np(heat)), 0, None)
    top = h.max()
    return h / top if top > 0 else h


def heat_overlay(image: Any, heat: Any, alpha: float = 0.5) -> np.ndarray:
    """Blend a (H, W) heat map, resized to the image if needed, onto a uint8 (C, H, W) image."""
    from matplotlib import colormaps

    rgb = to_rgb(_as_uint8(image)[None])[0].astype(np.float64) / 255  # (H, W, 3)
    h = normalise(heat)
    if h.shape != rgb.shape[:2]:
        t = torch.as_tensor(h, dtype=torch.float32)[None, None]
        t = torch.nn.functional.interpolate(t, size=rgb.shape[:2], mode="bilinear")
        h = t[0, 0].numpy()
    colour = colormaps[HEAT](h)[..., :3]
    out = (1 - alpha) * rgb + alpha * colour
    return (np.clip(out, 0, 1) * 255).round().astype(np.uint8)


def _as_uint8(images: Any) -> np.ndarray:
    arr = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if arr.dtype != np.uint8:
        raise ValueError(f"expected uint8 images (the data set's pixels), got {arr.dtype}")
    return arr


def filters_png(weight: Any, target: int = 480) -> bytes:
    """PNG of a first-layer kernel mosaic ``(O, I, kh, kw)``, each filter scaled on its own."""
    mosaic = filter_mosaic(weight)
    return encode_png(upscale(mosaic, scale_for(mosaic.shape[1], target, limit=16)))


def _grid(n: int, max_cols: int) -> tuple[int, int]:
    cols = max(1, min(n, max_cols))
    return -(-n // cols), cols


def feature_mosaic(maps: Any, *, cols: int = 8, pad: int = 1) -> np.ndarray:
    """Tile a (C, h, w) map stack into one RGB uint8 image, each channel scaled to its own range
    and coloured with viridis (gaps in the filter mosaic's colour)."""
    from matplotlib import colormaps

    from cnnlab.viz.weights import GAP_COLOUR

    m = _np(maps)
    if m.ndim != 3 or len(m) == 0:
        raise ValueError(f"feature maps must be (C, h, w) with C >= 1, got shape {m.shape}")
    lo = m.min(axis=(1, 2), keepdims=True)
    span = m.max(axis=(1, 2), keepdims=True) - lo
    scaled = np.where(span > 0, (m - lo) / np.where(span > 0, span, 1), 0.0)
    tiles = (colormaps[MAPS](scaled)[..., :3] * 255).round().astype(np.uint8)  # (C, h, w, 3)
    c, h, w = m.shape
    rows, cols = _grid(c, cols)
    out = np.empty((pad + rows * (h + pad), pad + cols * (w + pad), 3), dtype=np.uint8)
    out[:] = GAP_COLOUR
    for idx in range(c):
        r, q = divmod(idx, cols)
        y, x = pad + r * (h + pad), pad + q * (w + pad)
        out[y : y + h, x : x + w] = tiles[idx]
    return out


def plot_feature_maps(maps: Any, *, title: str, max_channels: int = 64) -> Any:
    """All channels of a (C, h, w) map stack (up to ``max_channels``) in one tiled picture,
    channel numbers in the corners; bright = strong relative to that channel's range."""
    m = _np(maps)[:max_channels]
    mosaic = feature_mosaic(m)
    cols = _grid(len(m), 8)[1]
    height, width = mosaic.shape[:2]
    fig = new_figure(min(9.0, 1.1 * cols), min(9.0, 1.1 * cols) * height / width + 0.4)
    ax = fig.add_axes((0.01, 0.01, 0.98, 1 - 0.4 / fig.get_figheight()))
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title, fontsize=9)
    h, w = m.shape[1:]
    for idx in range(len(m)):
        r, q = divmod(idx, cols)
        ax.text(1 + q * (w + 1), 1 + r * (h + 1), str(idx), fontsize=5, color="white",
                va="top", ha="left")  # fmt: skip
    return fig


def plot_overlays(
    images: Any, heats: Sequence[Any], captions: Sequence[str], *, title: str, ncols: int = 8
) -> Any:
    """Image + heat-map overlay panels with a caption each (CAMs, top-k, channel maps)."""
    imgs = _as_uint8(images)
    if not len(imgs) == len(heats) == len(captions):
        raise ValueError(f"{len(imgs)} images, {len(heats)} maps, {len(captions)} captions")
    rows, cols = _grid(len(imgs), ncols)
    fig = new_figure(1.5 * cols, 1.6 * rows + 0.4)
    fig.subplots_adjust(
        left=0.01,
        right=0.99,
        bottom=0.01,
        top=1 - 0.4 / (1.6 * rows + 0.4),
        hspace=0.35,
        wspace=0.05,
    )
    fig.suptitle(title, fontsize=9)
    for idx, ax in enumerate(fig.subplots(rows, cols, squeeze=False).flat):
        ax.set_axis_off()
        if idx < len(imgs):
            ax.imshow(heat_overlay(imgs[idx], heats[idx]), interpolation="bilinear")
            ax.set_title(captions[idx], fontsize=7, pad=2)
    return fig


def plot_sparsity(rows: Sequence[Any], *, title: str = "Activation sparsity per layer") -> Any:
    """Horizontal bars: share of (near-)zero activations per layer, input side at the top."""
    if not rows:
        raise ValueError("plot_sparsity: no layers")
    names = [f"{r.name} ({r.type})" for r in rows]
    values = [100 * r.fraction for r in rows]
    height = 1.0 + 0.28 * len(rows)  # inches: 0.6 below the bars, 0.4 above
    fig = new_figure(6.5, height)
    ax = fig.add_axes((0.42, 0.6 / height, 0.53, 0.28 * len(rows) / height))
    ax.barh(range(len(rows)), values, color="#4c72b0")
    ax.set_yticks(range(len(rows)), names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("% of activations that are zero", fontsize=8)
    ax.set_title(title, fontsize=9)
    for i, v in enumerate(values):
        ax.text(min(v + 1, 88), i, f"{v:.0f}%", va="center", fontsize=7)
    return fig


def plot_distributed(images: Any, view: Any, *, title: str) -> Any:
    """Rows = images, columns = the image then one overlay per chosen channel (§3.1.2)."""
    imgs = _as_uint8(images)
    n = len(view.channels)
    fig = new_figure(1.4 * (n + 1), 1.45 * len(imgs) + 0.4)
    top = 1 - 0.4 / (1.45 * len(imgs) + 0.4)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=top, hspace=0.3, wspace=0.05)
    fig.suptitle(title, fontsize=9)
    grid = fig.subplots(len(imgs), n + 1, squeeze=False)
    for i in range(len(imgs)):
        grid[i, 0].imshow(to_rgb(imgs[i : i + 1])[0], interpolation="nearest")
        for j, channel in enumerate(view.channels):
            grid[i, j + 1].imshow(heat_overlay(imgs[i], view.maps[i, j]), interpolation="bilinear")
            share = float(view.active_fraction[i, j])
            grid[i, j + 1].set_title(f"ch {channel}: {100 * share:.0f}% on", fontsize=6, pad=1)
        for ax in grid[i]:
            ax.set_axis_off()
    return fig


def plot_fires_matrix(view: Any, *, labels: Sequence[str] | None = None) -> Any:
    """Images x channels: each channel's peak scaled by its best image; dots where it fires."""
    peaks = _np(view.peaks)
    best = peaks.max(axis=0, keepdims=True)
    scaled = np.where(best > 0, np.clip(peaks, 0, None) / np.where(best > 0, best, 1), 0)
    b, m = scaled.shape
    fig = new_figure(1.2 + 0.22 * m, 1.0 + 0.3 * b)
    ax = fig.add_axes((0.2, 0.2, 0.75, 0.7))
    ax.imshow(scaled, cmap="Blues", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
    ys, xs = np.nonzero(_np(view.fires) > 0)
    ax.scatter(xs, ys, s=10, c="#d62728", edgecolors="white", linewidths=0.4)
    ax.set_xticks(range(m), [str(c) for c in view.matrix_channels], fontsize=5, rotation=90)
    ax.set_yticks(range(b), list(labels) if labels else [str(i) for i in range(b)], fontsize=6)
    ax.set_xlabel("channel", fontsize=7)
    ax.set_title(f"{view.layer}: which channels fire on which images (red dots)", fontsize=8)
    return fig
