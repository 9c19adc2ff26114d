"""Easy ensemble for imbalanced data (handbook §13.1.2; Liu, Wu & Zhou 2009).

Each member is trained on a balanced subset of the training split: every class is cut down to
``per_class`` samples (default: the size of the smallest class), so the minority class(es)
contribute all their samples and each larger class a fresh random subset without replacement.
Repeating this with different draws gives members that together see most of the majority
data; they are combined by averaging (an ``Ensemble`` with rule ``mean``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch

from cnnlab.data.loader import BatchLoader
from cnnlab.ensembles.combine import EnsembleError
from cnnlab.ensembles.ensemble import Ensemble
from cnnlab.models.spec import build_model
from cnnlab.training.assemble import model_spec_of, prepare_model
from cnnlab.training.spine import train_model


def balanced_subset(
    labels: torch.Tensor, *, per_class: int | None = None, seed: int = 0
) -> torch.Tensor:
    """Sorted indices: ``min(per_class, n_c)`` random samples of every class present."""
    labels = labels.cpu().long()
    if labels.dim() != 1 or labels.numel() == 0:
        raise EnsembleError("easy ensemble: labels must be a non-empty 1-D tensor")
    counts = torch.bincount(labels)
    present = torch.nonzero(counts).flatten()
    k = int(counts[present].min()) if per_class is None else per_class
    if k < 1:
        raise EnsembleError(f"easy ensemble: per_class must be >= 1, got {per_class}")
    gen = torch.Generator().manual_seed(seed)
    picks = []
    for c in present.tolist():
        idx = torch.nonzero(labels == c).flatten()
        picks.append(idx[torch.randperm(idx.numel(), generator=gen)[:k]])
    return torch.cat(picks).sort().values


def easy_subsets(
    labels: torch.Tensor, members: int, *, per_class: int | None = None, seed: int = 0
) -> list[torch.Tensor]:
    """One balanced subset per member, each from its own seed (``seed + k``)."""
    if members < 1:
        raise EnsembleError(f"easy ensemble: members must be >= 1, got {members}")
    return [balanced_subset(labels, per_class=per_class, seed=seed + k) for k in range(members)]


def subset_bundle(data: Any, indices: torch.Tensor) -> Any:
    """A copy of a ``DataBundle`` whose training loader only holds ``indices`` (same
    normalisation, augmentation and evaluation loaders; no sampler: the subset is balanced)."""
    t = data.train
    idx = indices.to(t.images.device)
    train = BatchLoader(
        t.images.index_select(0, idx), t.labels.index_select(0, idx),
        batch_size=t.batch_size, normalizer=t.normalizer, device=t.device, shuffle=t.shuffle,
        seed=t.seed, drop_last=t.drop_last, channels_last=t.channels_last, transform=t.transform,
    )  # fmt: skip
    counts = torch.bincount(train.labels.cpu(), minlength=data.num_classes)
    return dataclasses.replace(data, train=train, class_counts=counts)


def train_easy_ensemble(
    cfg: Any,
    data: Any,
    *,
    members: int = 5,
    per_class: int | None = None,
    epochs: int | None = None,
    log: Callable[[str], None] = print,
) -> tuple[Ensemble, list[dict[str, Any]]]:
    """Train ``members`` models of ``cfg`` (model, loss, optimiser, schedule) with
    ``train_model``, each on its own balanced subset of ``data``'s training split; return the
    averaging ensemble and one info row per member (subset size, seed, final test accuracy)."""
    subsets = easy_subsets(data.train.labels, members, per_class=per_class, seed=cfg.seed)
    spec = model_spec_of(cfg, data.dataset)
    models, info = [], []
    for k, idx in enumerate(subsets):
        member_cfg = cfg.replace(seed=cfg.seed + k)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(member_cfg.seed)  # each member its own initialisation
            model = build_model(spec)
        prepare_model(member_cfg, model, resume=False, log=log)
        history, _ = train_model(
            model, member_cfg, data=subset_bundle(data, idx), epochs=epochs, log=log
        )
        models.append(model.eval())
        last = history[-1] if history else {}
        info.append({"member": k, "seed": member_cfg.seed, "train_size": int(idx.numel()),
                     "test_acc": last.get("test_acc"),
                     "train_seconds": sum(h["epoch_seconds"] for h in history)})  # fmt: skip
    ens = Ensemble(models, rule="mean", names=[f"easy{k}" for k in range(members)])
    return ens, info
