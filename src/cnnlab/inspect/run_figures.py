"""Look inside a trained run: rebuild it from its checkpoint and draw the "inside" figures.

Handbook §3.1.2 (distributed representation), §3.1.3 (first-layer filters, top-9 images per
channel) and the class heat maps of CAM / Grad-CAM. ``load_run`` rebuilds the model, its data set
and normalisation from a run directory (or a checkpoint file); the ``*_figure`` functions return
PNG bytes plus the numbers behind them, and ``inside_figures`` bundles the standard section of a
run report. The CLI (``cnnlab inspect``) is a thin shell over these functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.inspect.cam import CamResult, class_activation_map, grad_cam
from cnnlab.inspect.features import (
    DistributedView,
    SparsityRow,
    TopK,
    activation_sparsity,
    activation_types,
    distributed_view,
    feature_maps,
    top_k_activations,
)
from cnnlab.inspect.layers import default_map_layer, first_conv_layer, get_layer, list_layers
from cnnlab.trained.run import load
from cnnlab.viz.feature_plots import (
    filters_png,
    plot_distributed,
    plot_feature_maps,
    plot_fires_matrix,
    plot_overlays,
    plot_sparsity,
)
from cnnlab.viz.png import figure_to_png

#: What each image of ``inside_figures`` shows (for captions in reports).
CAPTIONS = {
    "filters": "First-layer filters, each scaled to its own range (Handbook §3.1.3).",
    "features_early": "Feature maps of an early layer for one test image.",
    "features_late": "Feature maps of the last spatial layer for the same image.",
    "gradcam": "Grad-CAM: where the evidence for the predicted class lies (true → predicted).",
    "sparsity": "Share of zero activations per layer over test images (Handbook §3.1.2).",
}


@dataclass
class InsideRun:
    """A rebuilt run: model (eval mode, checkpoint weights), data set and normalisation."""

    model: nn.Module
    dataset: Any  # cnnlab.data.datasets.ImageDataset
    normalizer: Any  # cnnlab.data.loader.Normalizer
    run_dir: Path
    meta: dict[str, Any]
    notice: str | None = None

    @property
    def input_size(self) -> tuple[int, int, int]:
        spec = self.meta["model"]
        return int(spec["in_chans"]), int(spec["input_size"]), int(spec["input_size"])

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.dataset.classes)

    def images(self, split: str = "test") -> torch.Tensor:
        """uint8 (N, C, H, W) images of ``split`` ("train" or "test")."""
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        return getattr(self.dataset, f"{split}_images")

    def labels(self, split: str = "test") -> torch.Tensor:
        return getattr(self.dataset, f"{split}_labels")

    def pick(self, indices: list[int], split: str = "test") -> torch.Tensor:
        """uint8 images at ``indices`` with a clear error for out-of-range ones."""
        images = self.images(split)
        bad = [i for i in indices if not 0 <= i < len(images)]
        if bad:
            raise ValueError(f"index {bad[0]} out of range: the {split} split has {len(images)}")
        return images[indices]


def load_run(path: str | Path, *, data_dir: str | Path | None = None) -> InsideRun:
    """Rebuild the model and data of a run directory or a ``checkpoint.safetensors`` file,
    through ``cnnlab.load`` (the weights the run's metrics.json reports), on the CPU."""
    run = load(path, device="cpu")
    dataset = run.dataset(data_dir)
    return InsideRun(run.fresh_model(), dataset, run.normalizer, run.path, run.meta,
                     dataset.notice)  # fmt: skip


def _png(fig: Any) -> bytes:
    return figure_to_png(fig, dpi=110)


def filters_figure(run: InsideRun) -> bytes:
    """Tiles of the first conv layer's kernels."""
    name = first_conv_layer(run.model)
    if name is None:
        raise ValueError(f"{run.meta['model']['name']} has no convolution layer")
    return filters_png(get_layer(run.model, name).weight)


def features_figure(run: InsideRun, layer: str, index: int = 0, split: str = "test") -> bytes:
    """Grid of ``layer``'s channels for one image."""
    maps = feature_maps(run.model, layer, run.pick([index], split), transform=run.normalizer)
    title = f"{layer}: {maps.shape[1]} channels, {split} image {index}"
    return _png(plot_feature_maps(maps[0], title=title))


def top_k_figure(
    run: InsideRun,
    layer: str,
    channel: int,
    *,
    k: int = 9,
    split: str = "test",
    max_images: int | None = None,
) -> tuple[bytes, TopK]:
    """The ``k`` images of ``split`` that activate ``channel`` of ``layer`` most, with maps."""
    images = run.images(split)[:max_images]
    top = top_k_activations(run.model, layer, channel, images, k=k, transform=run.normalizer)
    picked = images[top.indices]
    out = feature_maps(run.model, layer, picked, transform=run.normalizer)[:, channel]
    names = [run.classes[int(y)] for y in run.labels(split)[top.indices]]
    caps = [
        f"#{int(i)} {n}: {v:.2f}"
        for i, n, v in zip(top.indices, names, top.values.tolist(), strict=True)
    ]
    title = f"Top {len(picked)} {split} images for {layer} channel {channel} (of {len(images)})"
    return _png(plot_overlays(picked, list(out), caps, title=title, ncols=min(k, 9))), top


def sparsity_figure(
    run: InsideRun, *, split: str = "test", max_images: int = 256, eps: float = 0.0
) -> tuple[bytes, list[SparsityRow]]:
    """Share of zero activations per activation layer over the first ``max_images`` images."""
    images = run.images(split)[:max_images]
    rows = activation_sparsity(run.model, images, eps=eps, transform=run.normalizer)
    what = "zero" if eps == 0 else f"|a| <= {eps:g}"
    title = f"Share of {what} activations per layer ({len(images)} {split} images)"
    return _png(plot_sparsity(rows, title=title)), rows


def cam_figure(
    run: InsideRun,
    indices: list[int],
    *,
    method: str = "gradcam",
    layer: str | None = None,
    split: str = "test",
) -> tuple[bytes, CamResult]:
    """CAM or Grad-CAM overlays for the images at ``indices`` (explaining the prediction)."""
    if method not in ("cam", "gradcam"):
        raise ValueError(f"method must be 'cam' or 'gradcam', got {method!r}")
    images = run.pick(indices, split)
    x = run.normalizer(images)
    fn = class_activation_map if method == "cam" else grad_cam
    res = fn(run.model, x, layer=layer)
    truth = run.labels(split)[indices]
    caps = [_caption(run.classes, int(t), int(p)) for t, p in zip(truth, res.targets, strict=True)]
    label = "CAM" if method == "cam" else "Grad-CAM"
    title = f"{label} of layer {res.layer} (true → predicted)"
    return _png(plot_overlays(images, list(res.maps), caps, title=title)), res


def _caption(classes: tuple[str, ...], true: int, pred: int) -> str:
    return classes[true] if true == pred else f"{classes[true]} → {classes[pred]}"


def distributed_figures(
    run: InsideRun,
    layer: str,
    *,
    n_images: int = 4,
    n_channels: int = 4,
    seed: int = 0,
    split: str = "test",
) -> tuple[bytes, bytes, DistributedView]:
    """Overlays of a seeded random channel set on a few images, and the image x channel matrix."""
    images = run.images(split)[:n_images]
    view = distributed_view(
        run.model, layer, images, n_channels=n_channels, seed=seed, transform=run.normalizer
    )
    title = f"{layer}: channels {view.channels} (seed {seed}) on {len(images)} {split} images"
    labels = [f"{i}: {run.classes[int(y)]}" for i, y in enumerate(run.labels(split)[:n_images])]
    overlay = _png(plot_distributed(images, view, title=title))
    return overlay, _png(plot_fires_matrix(view, labels=labels)), view


def early_layer(run: InsideRun, late: str) -> str | None:
    """First spatial activation output (post-nonlinearity maps), else the first spatial layer
    (also when the first activation is already ``late``, the last spatial layer)."""
    spatial = [e for e in list_layers(run.model, run.input_size) if e.is_spatial]
    if not spatial:
        return None
    acts = {t.__name__ for t in activation_types()}
    first_act = next((e.name for e in spatial if e.type in acts), None)
    return first_act if first_act not in (None, late) else spatial[0].name


def inside_figures(
    run_dir: str | Path, *, data_dir: str | Path | None = None, max_images: int = 8
) -> dict[str, bytes]:
    """PNG bytes for the standard "inside the network" report section (keys: ``CAPTIONS``).

    Filters of the first conv, feature maps of an early and the last spatial layer for test
    image 0, Grad-CAM for the first ``max_images`` test images and activation sparsity over
    ``4 * max_images`` of them. Figures that do not apply (no conv layer, no activation) are
    left out.
    """
    run = load_run(run_dir, data_dir=data_dir)
    figs: dict[str, bytes] = {}
    if first_conv_layer(run.model) is not None:
        figs["filters"] = filters_figure(run)
    spatial = any(e.is_spatial for e in list_layers(run.model, run.input_size))
    if spatial:
        late = default_map_layer(run.model, run.input_size)
        early = early_layer(run, late) or late
        figs["features_early"] = features_figure(run, early)
        if late != early:
            figs["features_late"] = features_figure(run, late)
        n = min(max_images, len(run.images()))
        figs["gradcam"] = cam_figure(run, list(range(n)), layer=late)[0]
    acts = activation_types()
    if any(isinstance(m, acts) for m in run.model.modules()):
        figs["sparsity"] = sparsity_figure(run, max_images=4 * max_images)[0]
    return figs
