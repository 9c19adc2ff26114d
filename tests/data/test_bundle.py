"""build_data wires the data practice of chapters 5, 6 and 12 into the loaders."""

from __future__ import annotations

import pytest
import torch

from cnnlab.config import ConfigError, build_config
from cnnlab.data.bundle import build_data

BASE = {
    "dataset": "synthetic",
    "batch_size": 20,
    "params": {"train_size": 200, "test_size": 40, "image_size": 8, "num_classes": 4},
}


def _data(**data):
    cfg = build_config({"data": {**BASE, **data}})
    return build_data(cfg.data, seed=0, device=torch.device("cpu"))


def test_augmentation_touches_training_batches_only():
    plain, flipped = _data(), _data(augment=[{"name": "hflip", "p": 1.0}])
    x0, _ = next(iter(plain.train))
    x1, _ = next(iter(flipped.train))
    torch.testing.assert_close(x1, x0.flip(3))
    t0, _ = next(iter(plain.test))
    t1, _ = next(iter(flipped.test))
    torch.testing.assert_close(t0, t1)


def test_preprocessing_is_fitted_on_the_training_split():
    data = _data(preprocess=["mean_image"], normalize="none")
    train = torch.cat([x for x, _ in data.train])
    # the loader visits every training image once, so the mean of the output is ~0
    assert train.mean(dim=0).abs().max() < 1e-5
    test = torch.cat([x for x, _ in data.test])
    assert test.mean(dim=0).abs().max() > 1e-4  # test statistics did not leak in


def test_sampler_and_imbalance():
    data = _data(imbalance={"profile": "long_tail", "imbalance": 10}, sampler="class_balanced")
    counts = data.class_counts.tolist()
    assert counts[0] == 50 and counts[-1] == 5  # 50 per class, minority 1/10 of the majority
    ys = torch.cat([y for _, y in data.train])
    per_class = torch.bincount(ys, minlength=4).tolist()
    assert len(set(per_class)) == 1  # label shuffling: equal counts per epoch (§12.1.2)


def test_balanced_batches_get_the_per_rank_batch_size():
    data = _data(sampler="balanced_batches")
    for _, y in data.train:
        assert torch.bincount(y, minlength=4).tolist() == [5, 5, 5, 5]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"augment": [{"name": "flipp"}]}, "data.augment: unknown augmentation 'flipp'"),
        ({"augment": "hflip"}, "data.augment: expected a list"),
        ({"preprocess": ["zca"]}, "data.preprocess"),
        ({"sampler": "balance"}, "data.sampler: unknown sampler"),
        ({"imbalance": {"imbalance": -3}}, "data.imbalance"),
    ],
)
def test_bad_data_practice_fails_at_load(data, message):
    with pytest.raises(ConfigError, match=message):
        build_config({"data": {**BASE, **data}})
