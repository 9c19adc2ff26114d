"""Assemble a run's data from the ``data`` config section: splits, statistics, loaders."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from cnnlab.data.augment import build_augmentation, chain_transforms
from cnnlab.data.datasets import ImageDataset, load_dataset
from cnnlab.data.imbalance import make_imbalanced
from cnnlab.data.loader import BatchLoader, Normalizer, stratified_split
from cnnlab.data.preprocess import Pipeline, build_preprocess
from cnnlab.data.samplers import build_sampler


class DataError(ValueError):
    """Data that cannot be trained on (empty split or class, batch that does not divide)."""


@dataclass
class DataBundle:
    """Loaders for train / val (optional) / test plus what the model and report need."""

    dataset: ImageDataset
    train: BatchLoader
    val: BatchLoader | None
    test: BatchLoader
    normalizer: Normalizer
    class_counts: torch.Tensor  # of the training split actually used
    preprocess: Pipeline = field(default_factory=lambda: Pipeline([]))  # fitted on train only

    @property
    def num_classes(self) -> int:
        return self.dataset.num_classes

    @property
    def in_chans(self) -> int:
        return self.dataset.in_chans

    @property
    def image_size(self) -> int:
        return self.dataset.image_size

    @property
    def classes(self) -> tuple[str, ...]:
        return self.dataset.classes


def check_images(dataset: ImageDataset) -> None:
    """Refuse empty splits and empty classes up front, with the class named."""
    for split in ("train", "test"):
        n = getattr(dataset, f"{split}_labels").numel()
        if n == 0:
            raise DataError(
                f"data set {dataset.name!r} ({dataset.source}): the {split} split is empty"
            )
    counts = torch.bincount(dataset.train_labels, minlength=dataset.num_classes)
    empty = [dataset.classes[i] for i in range(dataset.num_classes) if counts[i] == 0]
    if empty:
        raise DataError(
            f"data set {dataset.name!r}: no training images for class(es) {', '.join(empty)}"
        )


def build_data(
    cfg,
    *,
    seed: int,
    device: torch.device,
    channels_last: bool = False,
    dataset: ImageDataset | None = None,
    rank: int = 0,
    world_size: int = 1,
) -> DataBundle:
    """Load (or take) the data set, carve the validation split, fit normalisation on the
    training split only (handbook §6: no test statistics leak into preprocessing)."""
    if dataset is None:
        dataset = load_dataset(
            cfg.dataset, cfg.data_dir, allow_sample=cfg.allow_sample, **dict(cfg.params)
        )
    check_images(dataset)
    if cfg.batch_size % world_size:
        raise DataError(
            f"data.batch_size={cfg.batch_size} is the global batch and must divide evenly "
            f"between {world_size} processes"
        )
    train_x, train_y = dataset.train_images, dataset.train_labels
    val_x = val_y = None
    if cfg.val_split > 0:
        train_idx, val_idx = stratified_split(train_y, cfg.val_split, cfg.split_seed)
        val_x, val_y = train_x[val_idx], train_y[val_idx]
        train_x, train_y = train_x[train_idx], train_y[train_idx]
    if cfg.imbalance is not None:  # handbook ch. 12: an imbalanced version of the train split
        train_x, train_y = make_imbalanced(train_x, train_y, **dict(cfg.imbalance))
    if cfg.normalize == "per-channel":
        normalizer = Normalizer.fit(train_x)
    else:
        normalizer = Normalizer.identity(dataset.in_chans)
    # Everything below is fitted on the training split only (handbook §6).
    pre = build_preprocess(cfg.preprocess, train_x, normalizer=normalizer)
    aug = build_augmentation(
        cfg.augment, mean=normalizer.mean, std=normalizer.std, train_images=train_x
    )
    sampler = build_sampler(_sampler_spec(cfg, world_size), train_y, seed=seed)

    def loader(x, y, train: bool) -> BatchLoader:
        return BatchLoader(
            x,
            y,
            batch_size=cfg.batch_size // world_size if train else cfg.eval_batch_size,
            normalizer=normalizer,
            device=device,
            shuffle=train,
            seed=seed,
            drop_last=cfg.drop_last if train else False,
            channels_last=channels_last,
            rank=rank if train else 0,
            world_size=world_size if train else 1,
            transform=chain_transforms(aug, pre) if train else chain_transforms(pre),
            sampler=sampler if train else None,
        )

    return DataBundle(
        dataset=dataset,
        train=loader(train_x, train_y, True),
        val=loader(val_x, val_y, False) if val_x is not None else None,
        test=loader(dataset.test_images, dataset.test_labels, False),
        normalizer=normalizer,
        class_counts=torch.bincount(train_y, minlength=dataset.num_classes),
        preprocess=pre,
    )


def _sampler_spec(cfg, world_size: int):
    """``balanced_batches`` must build batches of the loader's per-rank size."""
    spec = cfg.sampler
    if spec == "balanced_batches":
        spec = {"name": "balanced_batches"}
    if isinstance(spec, dict) and spec.get("name") == "balanced_batches":
        spec = {"batch_size": cfg.batch_size // world_size, **spec}
    return spec
