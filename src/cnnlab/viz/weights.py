"""Pictures of learned weights: softmax-regression class templates and first-layer filters.

A softmax regression scores class k by the dot product of its weight row with the pixels, so
the row, reshaped to the image shape, is a template of what raises (red) or lowers (blue) the
score (case study, seed 004). The first convolution layer of a CNN looks at raw pixels, so its
kernels can be drawn as small images too (Handbook §3.1.3: edges and colour blobs).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from cnnlab.viz.png import new_figure

#: The colour of the gaps between tiles: a light steel blue that no grey filter pixel takes.
GAP_COLOUR = (200, 215, 235)
DIVERGING = "RdBu_r"
#: Weight maps saturate at this percentile of |w|, so a few outliers do not wash them out.
CLIP_PERCENTILE = 99.0


def first_conv(model: nn.Module) -> tuple[str, nn.Conv2d] | None:
    """``(name, module)`` of the first ``nn.Conv2d`` in registration order (the stem), or None."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            return name, module
    return None


def pixel_classifier(
    model: nn.Module, image_shape: Sequence[int], num_classes: int
) -> tuple[str, nn.Linear] | None:
    """The ``nn.Linear`` mapping raw pixels straight to class scores, if the model has one and
    no convolution (softmax regression); None otherwise."""
    if first_conv(model) is not None:
        return None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            fits = module.in_features == math.prod(image_shape)
            return (name, module) if fits and module.out_features == num_classes else None
    return None


def _as_array(weight: Any) -> np.ndarray:
    if isinstance(weight, torch.Tensor):
        weight = weight.detach().float().cpu().numpy()
    return np.nan_to_num(np.asarray(weight, dtype=np.float64))


def weight_maps(weight: Any, image_shape: Sequence[int]) -> np.ndarray:
    """Reshape a ``(K, C*H*W)`` classifier weight to ``(K, C, H, W)`` class templates."""
    w = _as_array(weight)
    c, h, ww = (int(s) for s in image_shape)
    if w.ndim != 2 or w.shape[1] != c * h * ww:
        raise ValueError(
            f"weight of shape {w.shape} does not map {c}x{h}x{ww} images to classes "
            f"(expected (K, {c * h * ww}))"
        )
    return w.reshape(w.shape[0], c, h, ww)  # (K, C*H*W) -> (K, C, H, W)


def weight_map_images(
    weight: Any, image_shape: Sequence[int], clip: float = CLIP_PERCENTILE
) -> tuple[np.ndarray, float]:
    """RGB pictures ``(K, H, W, 3)`` uint8 of the class templates, and the shared scale ``v``.

    ``v`` is the ``clip`` percentile of ``|w|`` over all classes (100 = the maximum): one scale
    for all classes so the maps compare, and a few extreme border pixels cannot wash the
    rest out; values beyond ``±v`` saturate. One-channel (or non-RGB) input: the diverging map
    ``RdBu_r`` over ``[-v, v]``, white = 0. RGB input: the template itself in colour,
    ``0.5 + w / (2 v)`` per channel, so mid-grey = 0.
    """
    from matplotlib import colormaps

    maps = weight_maps(weight, image_shape)
    vmax = float(np.percentile(np.abs(maps), clip)) or float(np.abs(maps).max()) or 1.0
    if maps.shape[1] == 3:
        rgb = 0.5 + maps.transpose(0, 2, 3, 1) / (2 * vmax)  # (K, 3, H, W) -> (K, H, W, 3)
    else:
        scaled = 0.5 + maps.mean(axis=1) / (2 * vmax)  # (K, C, H, W) -> (K, H, W)
        rgb = colormaps[DIVERGING](scaled)[..., :3]
    return (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8), vmax


def plot_weight_maps(weight: Any, image_shape: Sequence[int], classes: Sequence[str]) -> Any:
    """One panel per class showing its template, class names as titles, plus a colour bar."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    images, vmax = weight_map_images(weight, image_shape)
    k = images.shape[0]
    if len(classes) != k:
        raise ValueError(f"weight has {k} class rows but {len(classes)} class names given")
    cols = min(k, 10 if k <= 20 else 12)
    rows = -(-k // cols)
    fig = new_figure(1.1 * cols + 0.9, 1.25 * rows + 0.3)
    fig.subplots_adjust(left=0.01, right=0.88, bottom=0.02, top=0.92, wspace=0.08, hspace=0.3)
    grid = fig.subplots(rows, cols, squeeze=False)
    size = 8 if k <= 20 else 6
    for idx, ax in enumerate(grid.flat):
        ax.set_axis_off()
        if idx < k:
            ax.imshow(images[idx], interpolation="nearest")
            ax.set_title(str(classes[idx]), fontsize=size)
    if image_shape[0] != 3:
        bar = ScalarMappable(Normalize(-vmax, vmax), colormaps[DIVERGING])
        fig.colorbar(bar, cax=fig.add_axes((0.9, 0.1, 0.02, 0.8))).ax.tick_params(labelsize=7)
    return fig


def filter_grid(n: int) -> tuple[int, int]:
    """``(rows, cols)`` for ``n`` tiles, about twice as wide as tall (fits a page)."""
    if n < 1:
        raise ValueError(f"need at least one filter, got {n}")
    cols = min(n, math.ceil(math.sqrt(2 * n)))
    return -(-n // cols), cols


def filter_mosaic(weight: Any, pad: int = 1) -> np.ndarray:
    """Tile conv kernels ``(O, I, kh, kw)`` into one RGB uint8 image, each filter min-max
    normalised on its own (contrast within a filter is what shows its pattern).

    I = 3 is drawn in colour, I = 1 in grey, any other I as the mean over input channels.
    """
    w = _as_array(weight)
    if w.ndim != 4:
        raise ValueError(f"conv weight must be (O, I, kh, kw), got shape {w.shape}")
    o, i, kh, kw = w.shape
    lo = w.min(axis=(1, 2, 3), keepdims=True)
    span = w.max(axis=(1, 2, 3), keepdims=True) - lo
    norm = np.where(span > 0, (w - lo) / np.where(span > 0, span, 1.0), 0.5)
    if i == 3:
        tiles = norm.transpose(0, 2, 3, 1)  # (O, 3, kh, kw) -> (O, kh, kw, 3)
    else:
        tiles = np.repeat(norm.mean(axis=1)[..., None], 3, axis=3)  # (O, kh, kw) -> (O, kh, kw, 3)
    tiles = (tiles * 255).round().astype(np.uint8)
    rows, cols = filter_grid(o)
    out = np.empty((pad + rows * (kh + pad), pad + cols * (kw + pad), 3), dtype=np.uint8)
    out[:] = GAP_COLOUR
    for idx in range(o):
        r, c = divmod(idx, cols)
        y, x = pad + r * (kh + pad), pad + c * (kw + pad)
        out[y : y + kh, x : x + kw] = tiles[idx]
    return out


def plot_filters(weight: Any, *, title: str | None = None) -> Any:
    """The filter mosaic of ``weight (O, I, kh, kw)`` as a figure."""
    mosaic = filter_mosaic(weight)
    h, w = mosaic.shape[:2]
    width = min(10.0, max(3.0, w / 12))
    fig = new_figure(width, width * h / w + (0.4 if title else 0.1))
    ax = fig.add_axes((0.01, 0.01, 0.98, 0.9 if title else 0.98))
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    return fig
