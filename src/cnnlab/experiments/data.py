"""Data for the experiments: stratified Fashion-MNIST subsets, label noise, smaller images.

Trend experiments train on a class-stratified subset of Fashion-MNIST (``per_class`` training
and ``test_per_class`` test images of each class) so that a study fits a 2-core CPU. The
training subset is drawn with the seed (each seed sees different images), the test subset
with a fixed seed (every arm and seed is scored on the same images). At the ``smoke`` scale
the synthetic blob set of :func:`cnnlab.data.datasets.build_synthetic` stands in, so tests
need no files. The full set is loaded once per process and cached in the context.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F

from cnnlab.data.datasets import ImageDataset, load_dataset
from cnnlab.experiments.base import Context

SMOKE_DATA = {"num_classes": 4, "image_size": 16, "train_size": 96, "test_size": 48}
TEST_SUBSET_SEED = 12345


def base_dataset(ctx: Context) -> ImageDataset:
    """Fashion-MNIST (cached per context), or the synthetic set at the smoke scale."""
    key = "dataset:smoke" if ctx.smoke else f"dataset:{ctx.data_dir}"
    if key not in ctx.cache:
        if ctx.smoke:
            ds = load_dataset("synthetic", **SMOKE_DATA)
        else:
            ds = load_dataset("fashion-mnist", ctx.data_dir)
            if ds.notice:
                ctx.log(f"note: {ds.notice}")
        ctx.cache[key] = ds
    return ctx.cache[key]


def stratified_indices(labels: torch.Tensor, per_class: int | None, seed: int) -> torch.Tensor:
    """Up to ``per_class`` random indices of every class (all when None), sorted."""
    if per_class is None:
        return torch.arange(labels.numel())
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(labels.numel(), generator=gen)
    keep = []
    for c in torch.unique(labels).tolist():
        idx = perm[labels[perm] == c]
        keep.append(idx[:per_class])
    return torch.cat(keep).sort().values


def downsample(images: torch.Tensor, size: int) -> torch.Tensor:
    """Average-pool uint8 (N, C, H, W) images to ``size`` x ``size`` (H a multiple of size)."""
    h = images.shape[-1]
    if size == h:
        return images
    if h % size:
        raise ValueError(f"image_size {size} must divide the images' side {h}")
    x = F.avg_pool2d(images.float(), h // size)  # (N, C, H, W) -> (N, C, size, size)
    return x.round().clamp(0, 255).to(torch.uint8).contiguous()


def symmetric_noise(labels: torch.Tensor, rate: float, num_classes: int, seed: int) -> torch.Tensor:
    """Each label is replaced, with probability ``rate``, by a uniformly drawn *other* class."""
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"label noise rate must be in [0, 1), got {rate}")
    gen = torch.Generator().manual_seed(seed)
    flip = torch.rand(labels.numel(), generator=gen) < rate
    offset = torch.randint(1, num_classes, (labels.numel(),), generator=gen)
    noisy = torch.where(flip, (labels + offset) % num_classes, labels)
    return noisy.contiguous()


def subset(
    ctx: Context,
    seed: int,
    *,
    per_class: int | None = None,
    test_per_class: int | None = None,
    image_size: int | None = None,
    label_noise: float = 0.0,
) -> ImageDataset:
    """A stratified (optionally noisy, downsampled) subset of the experiment's data set.

    At the smoke scale the whole tiny synthetic set is used and the counts are ignored.
    """
    ds = base_dataset(ctx)
    if ctx.smoke:
        per_class = test_per_class = None
        image_size = None
    tr = stratified_indices(ds.train_labels, per_class, seed)
    te = stratified_indices(ds.test_labels, test_per_class, TEST_SUBSET_SEED)
    xtr, ytr = ds.train_images[tr].contiguous(), ds.train_labels[tr].contiguous()
    xte, yte = ds.test_images[te].contiguous(), ds.test_labels[te].contiguous()
    if image_size is not None:
        xtr, xte = downsample(xtr, image_size), downsample(xte, image_size)
    if label_noise > 0:
        ytr = symmetric_noise(ytr, label_noise, ds.num_classes, seed + 777)
    return replace(
        ds, train_images=xtr, train_labels=ytr, test_images=xte, test_labels=yte, notice=None
    )


def describe(ds: ImageDataset, **extra: Any) -> dict[str, Any]:
    """What a training saw, for its metrics.json."""
    c, h, w = ds.train_images.shape[1:]
    return {
        "dataset": ds.name,
        "source": ds.source,
        "train": int(ds.train_labels.numel()),
        "test": int(ds.test_labels.numel()),
        "image": [int(c), int(h), int(w)],
        "classes": ds.num_classes,
        **extra,
    }
