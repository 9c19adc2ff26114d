"""Grids of test images with their true and predicted labels (case study, seed 004: correctly
and wrongly classified Fashion-MNIST items)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from cnnlab.viz.png import new_figure
from cnnlab.viz.weights import GAP_COLOUR


def to_rgb(images: Any) -> np.ndarray:
    """uint8 ``(K, C, H, W)`` (or ``(K, H, W)``) images -> ``(K, H, W, 3)`` uint8 for display.

    C = 1 becomes grey, C = 3 is RGB, any other C shows its first channel."""
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[:, None]  # (K, H, W) -> (K, 1, H, W)
    if arr.ndim != 4:
        raise ValueError(f"images must be (K, C, H, W), got shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise ValueError(f"images must be uint8 pixels, got {arr.dtype}")
    if arr.shape[1] == 3:
        return np.ascontiguousarray(arr.transpose(0, 2, 3, 1))  # (K, 3, H, W) -> (K, H, W, 3)
    return np.repeat(arr[:, 0, :, :, None], 3, axis=3)  # (K, H, W) -> (K, H, W, 3)


def image_grid(images: Any, ncols: int = 8, pad: int = 2) -> np.ndarray:
    """Tile images into one RGB uint8 picture, ``ncols`` per row, gaps of ``pad`` pixels."""
    rgb = to_rgb(images)
    k, h, w, _ = rgb.shape
    if k == 0:
        raise ValueError("image_grid: no images")
    cols = max(1, min(ncols, k))
    rows = -(-k // cols)
    out = np.empty((pad + rows * (h + pad), pad + cols * (w + pad), 3), dtype=np.uint8)
    out[:] = GAP_COLOUR
    for idx in range(k):
        r, c = divmod(idx, cols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        out[y : y + h, x : x + w] = rgb[idx]
    return out


def example_caption(true: str, pred: str, confidence: float) -> str:
    """``"Coat 97%"`` for a correct prediction, ``"Shirt → T-shirt 64%"`` for a wrong one."""
    conf = f"{100 * confidence:.0f}%" if np.isfinite(confidence) else "?"
    return f"{true} {conf}" if true == pred else f"{true} → {pred} {conf}"


def plot_examples(
    images: Any,
    targets: Sequence[int],
    preds: Sequence[int],
    confidence: Sequence[float],
    classes: Sequence[str],
    *,
    ncols: int = 8,
    title: str | None = None,
) -> Any:
    """One panel per image titled ``true → predicted confidence``: green when right, red when
    wrong."""
    rgb = to_rgb(images)
    k = rgb.shape[0]
    if not len(targets) == len(preds) == len(confidence) == k:
        raise ValueError(
            f"{k} images but {len(targets)} targets, {len(preds)} predictions, "
            f"{len(confidence)} confidences"
        )
    if k == 0:
        raise ValueError("plot_examples: no images")
    cols = max(1, min(ncols, k))
    rows = -(-k // cols)
    fig = new_figure(1.2 * cols, 1.45 * rows + (0.3 if title else 0.0))
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.9 if title else 0.95)
    grid = fig.subplots(rows, cols, squeeze=False)
    names = [str(c) for c in classes]
    for idx, ax in enumerate(grid.flat):
        ax.set_axis_off()
        if idx >= k:
            continue
        t, p = int(targets[idx]), int(preds[idx])
        true, pred = _name(names, t), _name(names, p)
        ax.imshow(rgb[idx], interpolation="nearest")
        ax.set_title(
            example_caption(true, pred, float(confidence[idx])).replace(" → ", "\n→ "),
            fontsize=6.5,
            color="#1a7f37" if t == p else "#c62828",
        )
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def _name(names: Sequence[str], idx: int) -> str:
    return names[idx] if 0 <= idx < len(names) else str(idx)
