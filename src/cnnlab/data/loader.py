"""Batches straight from one in-memory uint8 tensor, with no per-sample Python.

The whole image set stays on the training device as ``uint8 (N, C, H, W)``. Each batch is taken
by indexing with a slice of a permutation, converted to float and normalised in one fused
pass. The permutation of epoch ``e`` is a pure function of ``(seed, e)``, so a resumed run sees
exactly the same data order, and distributed ranks can each take their own disjoint shard of
the same permutation (handbook §1.4: batches without replacement; §11.2.1: reshuffle every epoch).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

Transform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
# sampler(epoch) -> the indices to visit in that epoch (may repeat or omit samples: over- and
# under-sampling, class-balanced sampling); must be a pure function of the epoch.
Sampler = Callable[[int], torch.Tensor]


@dataclass(frozen=True)
class Normalizer:
    """Per-channel ``(x / 255 - mean) / std``, folded into one multiply-add."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    @staticmethod
    def fit(images: torch.Tensor) -> Normalizer:
        """Mean/std per channel of a uint8 (N, C, H, W) tensor (the training split only)."""
        x = images.to(torch.float64).div_(255)
        dims = (0, 2, 3)
        mean = x.mean(dim=dims)
        std = x.std(dim=dims).clamp_min(1e-6)
        return Normalizer(tuple(mean.tolist()), tuple(std.tolist()))

    @staticmethod
    def identity(channels: int) -> Normalizer:
        return Normalizer((0.0,) * channels, (1.0,) * channels)

    def scale_shift(
        self, device: torch.device | str, dtype: torch.dtype = torch.float32
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(scale, shift)`` as (1, C, 1, 1) tensors on ``device``, built once per device and
        dtype: making a tensor from Python numbers on a GPU is a blocking host-to-device copy,
        which per batch would stall the training loop (issue 23). Treat them as read-only."""
        return _scale_shift(self.mean, self.std, torch.device(device), dtype)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        scale, shift = self.scale_shift(images.device)
        return images.to(torch.float32).mul_(scale).add_(shift)


@functools.lru_cache(maxsize=64)
def _scale_shift(
    mean: tuple[float, ...], std: tuple[float, ...], device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    # float32 arithmetic on the CPU (the values the loader always used), then one copy each;
    # outside inference mode, so that a cached pair may later take part in autograd.
    with torch.inference_mode(False):
        m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        return (1.0 / (255.0 * s)).to(device, dtype), (-m / s).to(device, dtype)


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The data order of one epoch: a permutation of ``range(n)`` fixed by (seed, epoch)."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=gen)


class BatchLoader:
    """Iterate ``(x float, y int64)`` batches of an in-memory image tensor.

    ``shuffle`` draws a new permutation every epoch (``set_epoch``); ``rank``/``world_size``
    give each distributed process a disjoint, equally long shard of that permutation, cut so
    that one step's per-rank batches form one global batch (``batch_size`` is per rank; the
    few tail samples that do not divide evenly are dropped, none is seen twice per epoch).
    ``transform(x, generator)`` is a batched augmentation applied on the device; one with
    ``uses_index`` set is also given ``index=`` (the batch's dataset indices), ``epoch=`` and
    ``seed=`` (``augment_core.IndexedOp``).
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        batch_size: int,
        normalizer: Normalizer,
        device: torch.device | str = "cpu",
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        channels_last: bool = False,
        transform: Transform | None = None,
        sampler: Sampler | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(
                f"images: expected a uint8 (N, C, H, W) tensor, found {images.dtype} "
                f"{tuple(images.shape)}"
            )
        if labels.shape != (images.shape[0],):
            raise ValueError(
                f"labels: expected shape ({images.shape[0]},), found {tuple(labels.shape)}"
            )
        self.device = torch.device(device)
        self.images = images.to(self.device)
        self.labels = labels.to(self.device, torch.int64)
        self.batch_size = batch_size
        self.normalizer = normalizer
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.channels_last = channels_last
        self.transform = transform
        self.sampler = sampler
        self._sampled: tuple[int, torch.Tensor] | None = None  # (epoch, sampler output)
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self._scale, self._shift = normalizer.scale_shift(self.device)

    @property
    def epoch_size(self) -> int:
        """Samples visited per epoch over all ranks (a sampler may change it)."""
        if self.sampler is not None:
            return int(self._sampler_order().numel())
        return self.images.shape[0]

    def _sampler_order(self) -> torch.Tensor:
        assert self.sampler is not None
        if self._sampled is None or self._sampled[0] != self.epoch:
            self._sampled = (self.epoch, self.sampler(self.epoch))
        return self._sampled[1]

    @property
    def num_samples(self) -> int:
        """Samples this rank sees per epoch."""
        n, g = self.epoch_size, self.batch_size * self.world_size
        return (n // g) * self.batch_size + (n % g) // self.world_size

    def __len__(self) -> int:
        n, b = self.num_samples, self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def indices(self) -> torch.Tensor:
        """This rank's sample indices for the current epoch, in order.

        With ``world_size`` ranks and a per-rank batch b, global batch k is
        ``order[k*b*W : (k+1)*b*W]`` and rank r takes its r-th chunk of b: the ranks' batches
        of one step together are exactly the batch a single process with batch b*W would
        take, so distributed training follows the single-process run (handbook §1.4).
        """
        if self.sampler is not None:
            order = self._sampler_order()
        else:
            n = self.images.shape[0]
            order = epoch_permutation(n, self.seed, self.epoch) if self.shuffle else torch.arange(n)
        if self.world_size == 1:
            return order
        b, w, r = self.batch_size, self.world_size, self.rank
        full = (order.numel() // (b * w)) * b * w
        head = order[:full].view(-1, w, b)[:, r, :].reshape(-1)  # (steps, ranks, b) -> rank r
        tail = order[full:]
        part = tail.numel() // w
        return torch.cat([head, tail[r * part : (r + 1) * part]])

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.iter_from(0)

    def iter_from(self, start_batch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches of the current epoch from batch ``start_batch`` on (for exact resume)."""
        # Drawn on the CPU (fixed by seed and epoch on any device), copied without waiting
        # for the device: a blocking copy would stall a GPU's queue once per epoch.
        order = self.indices().to(self.device, non_blocking=True)
        gen = None
        if self.transform is not None:
            gen = torch.Generator(device=self.device)
            gen.manual_seed((self.seed * 1_000_003 + self.epoch) * 7919 + self.rank)
        for b in range(start_batch, len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            yield self._make_batch(idx, gen, b)

    def _make_batch(
        self, idx: torch.Tensor, gen: torch.Generator | None, batch_index: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.images.index_select(0, idx).to(torch.float32)
        x.mul_(self._scale).add_(self._shift)  # (x/255 - mean)/std in one pass
        if self.transform is not None:
            assert gen is not None
            # Re-seed per batch so a resumed epoch draws the same augmentations.
            gen.manual_seed((self.seed * 1_000_003 + self.epoch) * 7919 + batch_index)
            if getattr(self.transform, "uses_index", False):
                # e.g. alternating flips: which images these are, and in which epoch
                x = self.transform(x, gen, index=idx, epoch=self.epoch, seed=self.seed)
            else:
                x = self.transform(x, gen)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, self.labels.index_select(0, idx)


def stratified_split(
    labels: torch.Tensor, fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices ``(train, val)`` holding out ``round(fraction * n_c)`` samples of each class."""
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(labels.numel(), generator=gen)
    by_class = perm[torch.argsort(labels[perm], stable=True)]  # shuffled within each class
    sorted_labels = labels[by_class]
    counts = torch.bincount(sorted_labels)
    starts = torch.cumsum(counts, 0) - counts
    rank_in_class = torch.arange(labels.numel()) - starts[sorted_labels]
    k = torch.round(counts.to(torch.float64) * fraction).to(torch.int64)
    is_val = rank_in_class < k[sorted_labels]
    return by_class[~is_val].sort().values, by_class[is_val].sort().values
