"""Epoch samplers for imbalanced data: over-, under- and class-balanced sampling (handbook §12.1).

A sampler is built once from the training labels and then called as ``sampler(epoch)``: it
returns the int64 indices to visit in that epoch, in order (repeats allowed). The result is a
pure function of ``(seed, epoch)``, as ``BatchLoader(sampler=...)`` requires for exact resume
and distributed sharding. All work is done with tensor ops (per-class loops only at build).

Classes with no samples are left out: they cannot be drawn, so "every class" below means every
class present in ``labels``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from cnnlab.registry import Registry, RegistryError

__all__ = ["SAMPLERS", "Sampler", "build_sampler", "class_groups", "validate_sampler"]

SAMPLERS = Registry("sampler")
Sampler = Callable[[int], torch.Tensor]


class _Groups:
    """Labels grouped by class: ``order`` holds the indices sorted by class (stable)."""

    def __init__(self, labels: torch.Tensor, name: str) -> None:
        if not isinstance(labels, torch.Tensor) or labels.ndim != 1 or labels.numel() == 0:
            raise RegistryError(f"sampler {name!r}: labels must be a non-empty 1-D tensor")
        if labels.dtype != torch.int64 or int(labels.min()) < 0:
            raise RegistryError(f"sampler {name!r}: labels must be int64 class ids >= 0")
        labels = labels.cpu()
        counts = torch.bincount(labels)
        self.labels = labels
        self.present = torch.nonzero(counts).flatten()  # (K,) classes with samples
        self.counts = counts[self.present]  # (K,)
        self.starts = (torch.cumsum(counts, 0) - counts)[self.present]  # (K,)
        self.order = torch.argsort(labels, stable=True)  # (N,) grouped by class

    def shuffled_within(self, gen: torch.Generator) -> torch.Tensor:
        """Indices grouped by class (same layout as ``order``), each group in random order."""
        keys = self.labels.double() + torch.rand(self.labels.numel(), generator=gen).double()
        return torch.argsort(keys)

    def take(self, grouped: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Entry ``pos[k, j]`` of class k's group in ``grouped``: (K, M) indices."""
        return grouped[self.starts[:, None] + pos]


def class_groups(labels: torch.Tensor) -> dict[int, torch.Tensor]:
    """Sample indices of each present class (a small helper for inspection and tests)."""
    g = _Groups(labels, "class_groups")
    ends = g.starts + g.counts
    return {int(c): g.order[s:e] for c, s, e in zip(g.present, g.starts, ends, strict=True)}


def _generator(seed: int, epoch: int) -> torch.Generator:
    # A stream of its own: distinct from the loader's epoch_permutation for the same (seed, e).
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 2_654_435_761 % 2**63)


def _shuffle(idx: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    return idx[torch.randperm(idx.numel(), generator=gen)]


def _check_int(name: str, key: str, value: Any, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise RegistryError(f"sampler {name!r}: {key} must be an int >= {low}, got {value!r}")


def _tiled(g: _Groups, gen: torch.Generator, per_class: int) -> torch.Tensor:
    """Label shuffling: per class a permutation of 0..per_class-1 taken mod the class size."""
    keys = torch.rand(len(g.counts), per_class, generator=gen)
    perm = torch.argsort(keys, dim=1)  # (K, per_class) one random permutation per class
    return g.take(g.order, perm % g.counts[:, None])


@SAMPLERS.register("class_balanced")
def build_class_balanced(
    labels: torch.Tensor, *, seed: int = 0, per_class: int | None = None
) -> Sampler:
    """Label shuffling (handbook §12.1.2): every class gets ``per_class`` entries per epoch.

    ``per_class`` defaults to the largest class count. Each class's list is a random
    permutation of 0..per_class-1 taken modulo the class size, so a sample appears
    floor(per_class/n_c) or ceil(per_class/n_c) times; the lists are joined and shuffled.
    """
    g = _Groups(labels, "class_balanced")
    if per_class is not None:
        _check_int("class_balanced", "per_class", per_class, 1)
    n = int(g.counts.max()) if per_class is None else per_class

    def sampler(epoch: int) -> torch.Tensor:
        gen = _generator(seed, epoch)
        return _shuffle(_tiled(g, gen, n).flatten(), gen)

    return sampler


@SAMPLERS.register("oversample")
def build_oversample(labels: torch.Tensor, *, seed: int = 0) -> Sampler:
    """Random over-sampling (§12.1.1): minority classes are topped up to the largest count.

    Every sample is visited once per epoch; each smaller class adds ``n_max - n_c`` extra
    draws from its own samples, with replacement; then the epoch is shuffled.
    """
    g = _Groups(labels, "oversample")
    n_max = int(g.counts.max())

    def sampler(epoch: int) -> torch.Tensor:
        gen = _generator(seed, epoch)
        j = torch.arange(n_max).expand(len(g.counts), n_max)  # (K, n_max)
        draws = (torch.rand(len(g.counts), n_max, generator=gen) * g.counts[:, None]).long()
        draws = torch.minimum(draws, g.counts[:, None] - 1)  # guard float rounding at n_c
        pos = torch.where(j < g.counts[:, None], j, draws)
        return _shuffle(g.take(g.order, pos).flatten(), gen)

    return sampler


@SAMPLERS.register("undersample")
def build_undersample(labels: torch.Tensor, *, seed: int = 0) -> Sampler:
    """Random under-sampling (§12.1.1): each epoch takes a fresh random ``n_min`` per class.

    Discarding data for good would lose diversity (the handbook's warning), so the subset is
    redrawn every epoch: over many epochs every sample is still seen.
    """
    g = _Groups(labels, "undersample")
    n_min = int(g.counts.min())

    def sampler(epoch: int) -> torch.Tensor:
        gen = _generator(seed, epoch)
        pos = torch.arange(n_min).expand(len(g.counts), n_min)
        return _shuffle(g.take(g.shuffled_within(gen), pos).flatten(), gen)

    return sampler


@SAMPLERS.register("balanced_batches")
def build_balanced_batches(
    labels: torch.Tensor, *, seed: int = 0, batch_size: int = 100, num_batches: int | None = None
) -> Sampler:
    """In-batch under-sampling (§12.1.1): every batch holds batch_size/K samples of each class.

    ``batch_size`` must equal the loader's (per-rank) batch size and be a multiple of the
    number of classes K. An epoch has ``num_batches`` batches, by default as many as the
    smallest class fills without repeats (n_min // (batch_size/K), at least 1); larger
    classes contribute a fresh random subset each epoch, a class smaller than the epoch's
    demand is cycled through in random order.
    """
    name = "balanced_batches"
    g = _Groups(labels, name)
    k = len(g.counts)
    _check_int(name, "batch_size", batch_size, 1)
    if batch_size % k:
        raise RegistryError(
            f"sampler {name!r}: batch_size {batch_size} is not a multiple of the {k} classes"
        )
    if num_batches is not None:
        _check_int(name, "num_batches", num_batches, 1)
    per = batch_size // k
    steps = num_batches if num_batches is not None else max(1, int(g.counts.min()) // per)

    def sampler(epoch: int) -> torch.Tensor:
        gen = _generator(seed, epoch)
        pos = torch.arange(steps * per).expand(k, steps * per) % g.counts[:, None]
        idx = g.take(g.shuffled_within(gen), pos)  # (K, steps*per)
        # (K, steps, per) -> (steps, K*per): one row per batch, then shuffle inside each row.
        batches = idx.view(k, steps, per).permute(1, 0, 2).reshape(steps, k * per)
        inner = torch.argsort(torch.rand(steps, k * per, generator=gen), dim=1)
        return torch.gather(batches, 1, inner).flatten()

    return sampler


def build_sampler(spec: Any, labels: torch.Tensor, *, seed: int) -> Sampler | None:
    """A sampler from a config value: None, a name, or ``{"name": ..., **options}``."""
    if spec is None:
        return None
    if isinstance(spec, str):
        name, options = spec, {}
    elif isinstance(spec, Mapping) and isinstance(spec.get("name"), str):
        name, options = spec["name"], {k: v for k, v in spec.items() if k != "name"}
    else:
        raise RegistryError(f"sampler: expected a name or a mapping with 'name', found {spec!r}")
    for reserved in ("labels", "seed"):
        if reserved in options:
            raise RegistryError(f"sampler {name!r}: {reserved!r} is set by the data, not config")
    return SAMPLERS.build(name, labels=labels, seed=seed, **options)


def validate_sampler(spec: Any) -> None:
    """Check a sampler spec's name and options without data (for config loading).

    Checks that need the labels (e.g. batch_size a multiple of the number of classes) can
    only run in :func:`build_sampler`.
    """
    build_sampler(spec, torch.zeros(1, dtype=torch.int64), seed=0)
