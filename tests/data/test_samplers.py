"""Epoch samplers: stated class frequencies, valid indices, determinism per (seed, epoch)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlab.data.loader import BatchLoader, Normalizer
from cnnlab.data.samplers import SAMPLERS, build_sampler, class_groups, validate_sampler
from cnnlab.registry import RegistryError

# Per-class counts (some classes may be absent), a seed and an epoch.
counts_st = st.lists(st.integers(0, 25), min_size=2, max_size=6).filter(
    lambda c: sum(1 for n in c if n) >= 2
)
PROPS = settings(max_examples=40, deadline=None)


def labels_from(counts: list[int], seed: int = 0) -> torch.Tensor:
    labels = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    return labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))]


def freq(labels: torch.Tensor, idx: torch.Tensor, k: int) -> list[int]:
    return torch.bincount(labels[idx], minlength=k).tolist()


def check_valid(idx: torch.Tensor, labels: torch.Tensor) -> None:
    assert idx.dtype == torch.int64 and idx.ndim == 1
    assert int(idx.min()) >= 0 and int(idx.max()) < len(labels)


@PROPS
@given(counts_st, st.integers(0, 2**31), st.integers(0, 50))
def test_class_balanced_gives_every_class_n_max_entries(counts, seed, epoch):
    labels = labels_from(counts)
    idx = build_sampler("class_balanced", labels, seed=seed)(epoch)
    check_valid(idx, labels)
    n_max = max(counts)
    assert freq(labels, idx, len(counts)) == [n_max if n else 0 for n in counts]
    # Label shuffling tiles each class: every sample appears floor or ceil(n_max / n_c) times.
    seen = torch.bincount(idx, minlength=len(labels))
    for c, n in enumerate(counts):
        if n:
            times = seen[labels == c]
            assert int(times.min()) >= n_max // n and int(times.max()) <= -(-n_max // n)


@PROPS
@given(counts_st, st.integers(0, 2**31), st.integers(0, 50))
def test_oversample_tops_up_to_the_largest_class_and_keeps_every_sample(counts, seed, epoch):
    labels = labels_from(counts)
    idx = build_sampler("oversample", labels, seed=seed)(epoch)
    check_valid(idx, labels)
    assert freq(labels, idx, len(counts)) == [max(counts) if n else 0 for n in counts]
    assert set(idx.tolist()) == set(range(len(labels)))  # nobody is left out


@PROPS
@given(counts_st, st.integers(0, 2**31), st.integers(0, 50))
def test_undersample_takes_the_smallest_count_without_repeats(counts, seed, epoch):
    labels = labels_from(counts)
    idx = build_sampler("undersample", labels, seed=seed)(epoch)
    check_valid(idx, labels)
    n_min = min(n for n in counts if n)
    assert freq(labels, idx, len(counts)) == [n_min if n else 0 for n in counts]
    assert len(set(idx.tolist())) == len(idx)


@PROPS
@given(counts_st.filter(lambda c: all(c)), st.integers(1, 4), st.integers(0, 2**31))
def test_balanced_batches_hold_equal_class_counts(counts, per, seed):
    labels = labels_from(counts)
    k = len(counts)
    bs = per * k
    idx = build_sampler({"name": "balanced_batches", "batch_size": bs}, labels, seed=seed)(3)
    check_valid(idx, labels)
    assert len(idx) % bs == 0 and len(idx) >= bs
    for b in idx.view(-1, bs):
        assert freq(labels, b, k) == [per] * k
    assert len(idx) // bs == max(1, min(counts) // per)


@pytest.mark.parametrize("name", SAMPLERS.names())
def test_deterministic_per_seed_and_epoch_and_epochs_differ(name):
    labels = labels_from([30, 7, 12, 3])
    options = {"batch_size": 4} if name == "balanced_batches" else {}
    make = lambda seed: build_sampler({"name": name, **options}, labels, seed=seed)  # noqa: E731
    a, b = make(5), make(5)
    assert torch.equal(a(2), b(2)) and torch.equal(a(2), a(2))
    assert not torch.equal(a(2), a(3))
    assert not torch.equal(a(2), make(6)(2))


def test_every_registered_sampler_runs_with_defaults_in_the_loader():
    labels = labels_from([40, 10, 20, 30])
    images = torch.zeros(len(labels), 1, 2, 2, dtype=torch.uint8)
    for name in SAMPLERS.names():
        sampler = SAMPLERS.build(name, labels=labels, seed=0)
        loader = BatchLoader(images, labels, batch_size=20, normalizer=Normalizer.identity(1),
                             sampler=sampler)  # fmt: skip
        ys = torch.cat([y for _, y in loader])
        assert len(ys) == loader.epoch_size > 0


def test_balanced_batches_in_the_loader_and_with_more_batches():
    labels = labels_from([50, 8, 20])
    sampler = build_sampler({"name": "balanced_batches", "batch_size": 6, "num_batches": 10},
                            labels, seed=1)  # fmt: skip
    images = torch.zeros(len(labels), 1, 2, 2, dtype=torch.uint8)
    loader = BatchLoader(images, labels, batch_size=6, normalizer=Normalizer.identity(1),
                         sampler=sampler)  # fmt: skip
    batches = [y for _, y in loader]
    assert len(batches) == 10
    assert all(torch.bincount(y, minlength=3).tolist() == [2, 2, 2] for y in batches)


def test_class_groups_and_per_class_option():
    labels = torch.tensor([2, 0, 2, 2, 0])
    assert {k: v.tolist() for k, v in class_groups(labels).items()} == {0: [1, 4], 2: [0, 2, 3]}
    idx = build_sampler({"name": "class_balanced", "per_class": 5}, labels, seed=0)(0)
    assert torch.bincount(labels[idx]).tolist() == [5, 0, 5]


@pytest.mark.parametrize(
    ("spec", "labels", "message"),
    [
        ("oversampel", [0, 1], "Did you mean 'oversample'"),
        ({"name": "oversample", "ratio": 2}, [0, 1], "has no option 'ratio'"),
        ({"name": "balanced_batches", "batch_size": 5}, [0, 1, 2], "not a multiple of the 3"),
        ({"name": "class_balanced", "per_class": 0}, [0, 1], "per_class must be an int >= 1"),
        ({"name": "oversample", "seed": 3}, [0, 1], "'seed' is set by the data"),
        ("undersample", [], "non-empty"),
        ("undersample", [0, -1], "class ids >= 0"),
        (3, [0, 1], "expected a name or a mapping"),
    ],
)
def test_bad_input_fails_clearly(spec, labels, message):
    with pytest.raises(RegistryError, match=message):
        build_sampler(spec, torch.tensor(labels, dtype=torch.int64), seed=0)
    assert build_sampler(None, torch.tensor([0, 1]), seed=0) is None


def test_validate_without_data():
    validate_sampler({"name": "balanced_batches", "batch_size": 64})
    validate_sampler(None)
    with pytest.raises(RegistryError, match="has no option 'size'"):
        validate_sampler({"name": "class_balanced", "size": 3})
