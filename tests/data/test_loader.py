"""The in-memory batch loader: coverage, determinism, normalisation, sharding, splits."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlab.data.loader import BatchLoader, Normalizer, epoch_permutation, stratified_split


def _data(n=103, c=1, size=4):
    gen = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (n, c, size, size), generator=gen, dtype=torch.uint8)
    labels = torch.arange(n) % 5
    return images, labels


def _loader(images, labels, **kw):
    kw.setdefault("batch_size", 10)
    kw.setdefault("normalizer", Normalizer.identity(images.shape[1]))
    return BatchLoader(images, labels, **kw)


def test_each_sample_once_per_epoch_and_reshuffled():
    images, labels = _data()
    loader = _loader(images, labels, shuffle=True, seed=3)
    orders = []
    for epoch in range(2):
        loader.set_epoch(epoch)
        ys = torch.cat([y for _, y in loader])
        xs = torch.cat([x for x, _ in loader])
        assert len(ys) == 103 and len(loader) == 11
        # every image appears exactly once: match back to the source by content
        recovered = (xs * 255).round().to(torch.uint8)
        assert torch.equal(recovered.sort(0).values, images.float().sort(0).values.to(torch.uint8))
        orders.append(loader.indices())
    assert not torch.equal(orders[0], orders[1])
    assert torch.equal(orders[0], epoch_permutation(103, 3, 0))


def test_normalisation_matches_formula():
    images, labels = _data(c=3)
    norm = Normalizer(mean=(0.1, 0.2, 0.3), std=(0.5, 0.25, 2.0))
    x, _ = next(iter(_loader(images, labels, normalizer=norm)))
    mean = torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)
    std = torch.tensor([0.5, 0.25, 2.0]).view(1, 3, 1, 1)
    expected = (images[:10].float() / 255 - mean) / std
    torch.testing.assert_close(x, expected, rtol=1e-6, atol=1e-6)


def test_fit_uses_given_images_only():
    images, _ = _data(c=2)
    norm = Normalizer.fit(images)
    x = images.double() / 255
    torch.testing.assert_close(torch.tensor(norm.mean), x.mean(dim=(0, 2, 3)), check_dtype=False)
    torch.testing.assert_close(torch.tensor(norm.std), x.std(dim=(0, 2, 3)), check_dtype=False)


def test_resume_mid_epoch_gives_the_remaining_batches():
    images, labels = _data()
    loader = _loader(images, labels, shuffle=True, seed=0)
    loader.set_epoch(4)
    full = [y for _, y in loader]
    tail = [y for _, y in loader.iter_from(6)]
    assert len(tail) == len(full) - 6
    assert all(torch.equal(a, b) for a, b in zip(full[6:], tail, strict=True))


def test_transform_is_reproducible_on_resume():
    images, labels = _data()

    def jitter(x, gen):
        return x + torch.rand(x.shape, generator=gen)

    loader = _loader(images, labels, shuffle=True, transform=jitter)
    full = [x for x, _ in loader]
    tail = [x for x, _ in loader.iter_from(3)]
    assert all(torch.equal(a, b) for a, b in zip(full[3:], tail, strict=True))


def test_drop_last_and_channels_last():
    images, labels = _data(c=3)
    loader = _loader(images, labels, drop_last=True, channels_last=True)
    batches = list(loader)
    assert len(batches) == 10 and all(len(y) == 10 for _, y in batches)
    assert batches[0][0].is_contiguous(memory_format=torch.channels_last)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(5, 60), world=st.integers(1, 4), epoch=st.integers(0, 3))
def test_rank_shards_are_disjoint_and_equal(n, world, epoch):
    images = torch.zeros(n, 1, 2, 2, dtype=torch.uint8)
    labels = torch.zeros(n, dtype=torch.int64)
    shards = []
    for rank in range(world):
        loader = _loader(images, labels, shuffle=True, seed=7, rank=rank, world_size=world)
        loader.set_epoch(epoch)
        shards.append(loader.indices())
    sizes = {len(s) for s in shards}
    assert sizes == {n // world}
    allidx = torch.cat(shards)
    assert len(set(allidx.tolist())) == len(allidx)  # no sample twice within an epoch


@settings(max_examples=30, deadline=None)
@given(
    counts=st.lists(st.integers(1, 40), min_size=2, max_size=6),
    frac=st.floats(0.05, 0.9),
    seed=st.integers(0, 5),
)
def test_stratified_split_property(counts, frac, seed):
    labels = torch.cat([torch.full((c,), k) for k, c in enumerate(counts)])
    labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(9))]
    train, val = stratified_split(labels, frac, seed)
    assert len(set(train.tolist()) & set(val.tolist())) == 0
    assert len(train) + len(val) == len(labels)
    val_counts = torch.bincount(labels[val], minlength=len(counts)).tolist()
    assert val_counts == [round(c * frac) for c in counts]
    again = stratified_split(labels, frac, seed)
    assert torch.equal(again[1], val)


def test_bad_inputs_named():
    import pytest

    with pytest.raises(ValueError, match="expected a uint8"):
        _loader(torch.zeros(3, 1, 2, 2), torch.zeros(3, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"labels: expected shape \(3,\)"):
        _loader(torch.zeros(3, 1, 2, 2, dtype=torch.uint8), torch.zeros(4, dtype=torch.int64))


@settings(max_examples=30, deadline=None)
@given(n=st.integers(8, 80), world=st.integers(2, 4), b=st.integers(1, 6))
def test_rank_batches_form_the_single_process_batches(n, world, b):
    images = torch.zeros(n, 1, 2, 2, dtype=torch.uint8)
    labels = torch.zeros(n, dtype=torch.int64)
    single = _loader(images, labels, batch_size=b * world, shuffle=True, seed=3)
    ranks = [
        _loader(images, labels, batch_size=b, shuffle=True, seed=3, rank=r, world_size=world)
        for r in range(world)
    ]
    order = single.indices()
    steps = n // (b * world)
    for k in range(steps):
        together = torch.cat([rl.indices()[k * b : (k + 1) * b] for rl in ranks])
        assert torch.equal(together, order[k * b * world : (k + 1) * b * world])
    assert len({len(rl) for rl in ranks}) == 1
