"""Easy ensemble (handbook §13.1.2): balanced subsets per member, averaged members."""

from __future__ import annotations

import pytest
import torch

from cnnlab.data.bundle import build_data
from cnnlab.ensembles import EnsembleError, balanced_subset, easy_subsets, train_easy_ensemble
from cnnlab.evaluation.evaluate import evaluate

LABELS = torch.tensor([0] * 50 + [1] * 10 + [2] * 5)


def test_each_subset_is_balanced_and_keeps_every_minority_sample():
    idx = balanced_subset(LABELS, seed=0)
    assert torch.bincount(LABELS[idx]).tolist() == [5, 5, 5]
    assert set(range(60, 65)) <= set(idx.tolist())  # the smallest class: all of it
    assert torch.equal(idx, idx.unique())  # sorted, no repeats
    capped = balanced_subset(LABELS, per_class=8, seed=0)
    assert torch.bincount(LABELS[capped]).tolist() == [8, 8, 5]


def test_members_draw_different_majority_subsets():
    subsets = easy_subsets(LABELS, 3, seed=0)
    majority = [set(s[LABELS[s] == 0].tolist()) for s in subsets]
    assert majority[0] != majority[1] and majority[1] != majority[2]
    with pytest.raises(EnsembleError, match="members must be >= 1"):
        easy_subsets(LABELS, 0)


def test_train_easy_ensemble_on_imbalanced_data(tiny_cfg):
    cfg = tiny_cfg(data={"imbalance": {"profile": "long_tail", "imbalance": 8}},
                   train={"epochs": 2, "progress": False})  # fmt: skip
    data = build_data(cfg.data, seed=cfg.seed, device=torch.device("cpu"))
    counts = data.class_counts
    ens, info = train_easy_ensemble(cfg, data, members=2, log=lambda m: None)
    assert len(ens.members) == 2 and [r["seed"] for r in info] == [0, 1]
    assert all(r["train_size"] == 4 * int(counts.min()) for r in info)
    res = evaluate(ens, data.test, num_classes=4)
    assert res.accuracy > 0.5
