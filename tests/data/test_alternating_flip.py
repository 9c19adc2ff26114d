"""Alternating (derandomised) flips: two consecutive epochs show each image both ways."""

from __future__ import annotations

import torch

from cnnlab.data.augment import build_augmentation, chain_transforms
from cnnlab.data.augment_geometric import image_bits
from cnnlab.data.loader import BatchLoader, Normalizer

N = 200


def asymmetric_images() -> torch.Tensor:
    """Image i has value i in its left column and 0 elsewhere: its orientation is visible."""
    x = torch.zeros(N, 1, 4, 4, dtype=torch.uint8)
    x[:, 0, :, 0] = torch.arange(N, dtype=torch.uint8).view(-1, 1) % 250 + 1
    return x


def orientation_by_image(loader: BatchLoader, epoch: int) -> torch.Tensor:
    """Bool (N,): whether each image came out mirrored in ``epoch``."""
    loader.set_epoch(epoch)
    flipped = torch.full((N,), -1)
    order = loader.indices()
    pos = 0
    for x, _ in loader:
        idx = order[pos : pos + x.shape[0]]
        pos += x.shape[0]
        right = x[:, 0, :, -1].abs().sum(1) > 0  # the marked column moved to the right
        left = x[:, 0, :, 0].abs().sum(1) > 0
        assert bool((right ^ left).all())
        flipped[idx] = right.long()
    assert bool((flipped >= 0).all()), "every image visited once"
    return flipped.bool()


def make_loader(seed: int = 0) -> BatchLoader:
    aug = build_augmentation(["alternating_flip"])
    return BatchLoader(
        asymmetric_images(), torch.zeros(N, dtype=torch.int64), batch_size=32,
        normalizer=Normalizer.identity(1), shuffle=True, seed=seed,
        transform=chain_transforms(aug, None),
    )  # fmt: skip


def test_each_image_is_seen_in_both_orientations_over_two_epochs() -> None:
    loader = make_loader()
    e0, e1, e2, e3 = (orientation_by_image(loader, e) for e in range(4))
    assert bool((e0 ^ e1).all())  # exactly one of the two epochs mirrors each image
    assert bool((e1 ^ e2).all()) and bool((e2 ^ e3).all())
    assert torch.equal(e0, e2) and torch.equal(e1, e3)
    assert 0.35 < e0.float().mean().item() < 0.65  # epoch 0: a random-looking half
    # The epoch-0 half is the index hash of the loader's seed, whatever the batch order.
    torch.testing.assert_close(e0, image_bits(torch.arange(N), 0))


def test_the_seed_picks_a_different_half_and_a_plain_call_falls_back_to_random() -> None:
    e0_seed0 = orientation_by_image(make_loader(0), 0)
    e0_seed1 = orientation_by_image(make_loader(1), 0)
    assert not torch.equal(e0_seed0, e0_seed1)
    op = build_augmentation(["alternating_flip"])
    assert op.uses_index
    x = torch.randn(64, 1, 3, 3)
    out = op(x, torch.Generator().manual_seed(0))  # no loader context (a preview)
    mirrored = (out == x.flip(3)).flatten(1).all(1) & ~(out == x).flatten(1).all(1)
    assert 10 < int(mirrored.sum()) < 54


def test_ops_without_index_still_get_called_plainly_in_a_pipeline() -> None:
    aug = build_augmentation(["alternating_flip", {"name": "random_crop", "padding": 1}])
    x = torch.randn(8, 1, 5, 5)
    out = aug(x, torch.Generator().manual_seed(0), index=torch.arange(8), epoch=1, seed=0)
    assert out.shape == x.shape
