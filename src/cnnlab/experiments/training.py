"""One training of an experiment: config-driven, in memory, with its own run directory.

``train`` builds a validated ``RunConfig`` from a config tree (the same sections as
``cnnlab train``), the data bundle from an experiment data set, the model (zoo model from the
config, or a given module) with the config's initialiser, and trains with
:func:`cnnlab.training.spine.train_model` (every practice of the config applies). It writes
``config.yaml``, ``history.csv`` and ``metrics.json`` to ``<experiment>/runs/<arm>/seed<k>/``
and returns the trained model and its history. A divergence (NaN/inf loss) is recorded, not
raised: some claims are about it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from cnnlab.config import RunConfig, build_config, dump_config, merge_trees
from cnnlab.data.bundle import DataBundle, build_data
from cnnlab.data.datasets import ImageDataset
from cnnlab.data.loader import BatchLoader
from cnnlab.engine.callbacks import Callback, write_history
from cnnlab.engine.checkpoint import atomic_write_text
from cnnlab.engine.rundir import clean_json
from cnnlab.engine.trainer import DivergenceError
from cnnlab.evaluation.evaluate import evaluate
from cnnlab.experiments.base import Context
from cnnlab.experiments.data import describe
from cnnlab.models.spec import build_model
from cnnlab.training.assemble import model_spec_of, prepare_model, seed_everything, silent
from cnnlab.training.spine import train_model

BASE_TREE: dict[str, Any] = {
    "data": {"batch_size": 64, "eval_batch_size": 500},
    "optim": {"name": "adam", "lr": 1e-3},
    "train": {"epochs": 1, "progress": False, "checkpoint_every": 0, "precision": "fp32"},
}


def make_config(tree: dict[str, Any], seed: int, dataset: ImageDataset) -> RunConfig:
    """A validated config: defaults < BASE_TREE < ``tree``; the data set named as loaded."""
    full = merge_trees(BASE_TREE, tree)
    full.setdefault("data", {})["dataset"] = dataset.name
    full["seed"] = seed
    return build_config(full)


def make_data(cfg: RunConfig, dataset: ImageDataset) -> DataBundle:
    """The data bundle of ``cfg`` (batching, normalisation, augmentation, sampler) on the CPU."""
    return build_data(cfg.data, seed=cfg.seed, device=torch.device("cpu"), dataset=dataset)


def make_model(cfg: RunConfig, dataset: ImageDataset) -> nn.Module:
    """The config's zoo model, seeded by the config's seed, with its initialiser applied (the
    same building blocks as every training: ``cnnlab.training.assemble``)."""
    seed_everything(cfg.seed)
    model = build_model(model_spec_of(cfg, dataset))
    prepare_model(cfg, model, resume=False, log=silent)
    return model


def eval_loader(data: DataBundle, split: str = "test", limit: int | None = None) -> BatchLoader:
    """Unaugmented batches of a split (``train`` evaluates the training images in eval mode)."""
    src = data.train if split == "train" else data.test
    x, y = src.images, src.labels
    if limit is not None:
        x, y = x[:limit], y[:limit]
    return BatchLoader(
        x, y, batch_size=500, normalizer=data.normalizer, transform=data.test.transform
    )


def accuracy(model: nn.Module, data: DataBundle, split: str = "test") -> float:
    return evaluate(model, eval_loader(data, split), num_classes=data.num_classes).accuracy


class Recorder(Callback):
    """Keeps the trained module (as the trainer holds it) and the history rows seen so far."""

    def __init__(self) -> None:
        self.model: nn.Module | None = None
        self.rows: list[dict[str, float]] = []

    def on_fit_start(self, trainer: Any, state: Any) -> None:
        self.model = trainer.model

    def on_epoch_end(self, trainer: Any, state: Any, row: dict[str, float]) -> None:
        self.rows.append(dict(row))


class Probe(Callback):
    """Loss and error on fixed batches every ``every`` optimiser steps (and at step 0).

    Gives learning curves finer than one point per epoch: the x axis is in epochs
    (step / steps per epoch).
    """

    def __init__(
        self, batches: Sequence[tuple[torch.Tensor, torch.Tensor]], every: int, steps_per_epoch: int
    ) -> None:
        self.batches, self.every = list(batches), max(1, int(every))
        self.steps_per_epoch = max(1, steps_per_epoch)
        self.points: list[tuple[float, float, float]] = []  # (epoch, loss, error)

    @torch.no_grad()
    def measure(self, model: nn.Module, step: int) -> None:
        was = model.training
        model.eval()
        loss = wrong = n = 0.0
        for x, y in self.batches:
            out = model(x).float()
            loss += float(nn.functional.cross_entropy(out, y, reduction="sum"))
            wrong += float((out.argmax(1) != y).sum())
            n += y.numel()
        model.train(was)
        self.points.append((step / self.steps_per_epoch, loss / n, wrong / n))

    def on_fit_start(self, trainer: Any, state: Any) -> None:
        self.measure(trainer.model, 0)

    def on_step_end(self, trainer: Any, state: Any) -> None:
        if state.step % self.every == 0:
            self.measure(trainer.model, state.step)

    def curve(self, which: str = "error") -> dict[str, list[float]]:
        col = 2 if which == "error" else 1
        return {"x": [p[0] for p in self.points], "y": [p[col] for p in self.points]}


class StepLosses(Callback):
    """The training loss of every optimiser step (the trainer's running sums, differenced)."""

    def __init__(self) -> None:
        self.losses: list[float] = []
        self._sum = self._seen = 0.0

    def needs_sync(self, state: Any) -> bool:
        return True

    def on_epoch_start(self, trainer: Any, state: Any, num_batches: int) -> None:
        self._sum, self._seen = state.epoch_loss_sum, state.epoch_seen

    def on_step_end(self, trainer: Any, state: Any) -> None:
        seen = state.epoch_seen - self._seen
        if seen > 0:
            self.losses.append((state.epoch_loss_sum - self._sum) / seen)
        self._sum, self._seen = state.epoch_loss_sum, state.epoch_seen


@dataclass
class Trial:
    """A finished (or diverged) training."""

    cfg: RunConfig
    data: DataBundle
    model: nn.Module
    history: list[dict[str, float]]
    seconds: float
    diverged: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def last(self) -> dict[str, float]:
        return self.history[-1] if self.history else {}


def probe_batches(data: DataBundle, n: int = 1000) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Up to ``n`` fixed, unaugmented training images as evaluation batches."""
    return list(eval_loader(data, "train", limit=n))


def train(
    ctx: Context,
    arm: str,
    seed: int,
    tree: dict[str, Any],
    dataset: ImageDataset,
    *,
    model: nn.Module | None = None,
    data: DataBundle | None = None,
    task: Any = None,
    callbacks: Sequence[Callback] = (),
    note: dict[str, Any] | None = None,
) -> Trial:
    """Train ``arm`` for ``seed`` (see the module docstring); never raises on divergence."""
    cfg = make_config(tree, seed, dataset)
    data = data if data is not None else make_data(cfg, dataset)
    if model is None:
        model = make_model(cfg, dataset)
        spec: dict[str, Any] = {"name": cfg.model.name, "params": dict(cfg.model.params)}
    else:
        spec = {"name": type(model).__name__, "custom": True, **(note or {}).get("model", {})}
    recorder = Recorder()
    extra_cbs: list[Callback] = [recorder]  # train_model adds the config's own (max-norm, ...)
    start, diverged = time.perf_counter(), None
    try:
        train_model(
            model, cfg, data=data, task=task, log=silent, callbacks=[*extra_cbs, *callbacks]
        )
    except DivergenceError as err:
        diverged = str(err)
    seconds = time.perf_counter() - start
    trained = recorder.model if recorder.model is not None else model
    trial = Trial(cfg, data, trained, recorder.rows, seconds, diverged)
    write_run(ctx, arm, seed, trial, spec, note)
    return trial


def write_run(
    ctx: Context,
    arm: str,
    seed: int,
    trial: Trial,
    spec: dict[str, Any],
    note: dict[str, Any] | None = None,
) -> None:
    """config.yaml, history.csv and metrics.json of one training."""
    rd = ctx.run_dir(arm, seed)
    rd.mkdir(parents=True, exist_ok=True)
    atomic_write_text(rd / "config.yaml", dump_config(trial.cfg))
    if trial.history:
        write_history(rd / "history.csv", trial.history)
    metrics = {
        "arm": arm,
        "seed": seed,
        "model": spec,
        "data": describe(trial.data.dataset),
        "epochs": len(trial.history),
        "seconds": trial.seconds,
        "diverged": trial.diverged,
        "last": trial.last,
        **{k: v for k, v in (note or {}).items() if k != "model"},
    }
    atomic_write_text(rd / "metrics.json", json.dumps(clean_json(metrics), indent=2) + "\n")


def probed(
    ctx: Context,
    arm: str,
    seed: int,
    tree: dict[str, Any],
    dataset: ImageDataset,
    *,
    model: nn.Module | None = None,
    probe_n: int = 1000,
    per_epoch: int = 8,
    note: dict[str, Any] | None = None,
) -> tuple[Trial, Probe]:
    """``train`` with a Probe on ``probe_n`` fixed training images, ``per_epoch`` times per
    epoch (learning curves finer than one point per epoch)."""
    cfg = make_config(tree, seed, dataset)
    data = make_data(cfg, dataset)
    probe = Probe(probe_batches(data, probe_n), len(data.train) // per_epoch, len(data.train))
    trial = train(
        ctx, arm, seed, tree, dataset, model=model, data=data, callbacks=[probe], note=note
    )
    return trial, probe
