"""The spine: data -> model -> loss -> optimiser/schedule -> trainer -> evaluation -> report.

Three ways to run a training, all assembled by :func:`cnnlab.training.assemble.assemble`:
``run_training`` into a run directory (``cnnlab train``, ``compare``, ensemble members),
``train_model`` in memory (compression steps, distillation students, easy ensembles, the
experiments) and ``run_lr_find``, a sweep instead of the loop. docs/architecture.md walks
through them file by file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import torch.nn as nn

from cnnlab.config import ConfigError, RunConfig
from cnnlab.data.bundle import DataBundle
from cnnlab.engine.callbacks import Callback, EpochLog
from cnnlab.engine.distributed import SINGLE, DistInfo
from cnnlab.engine.resume import ResumePoint
from cnnlab.engine.state import TrainState
from cnnlab.engine.tasks import Task
from cnnlab.engine.trainer import Trainer
from cnnlab.evaluation.evaluate import evaluate
from cnnlab.optim.lr_finder import LRFindResult, lr_find
from cnnlab.training.assemble import (
    Log,
    TrainingSetup,
    assemble,
    config_callbacks,
    silent,
)
from cnnlab.training.run_directory import TrainingRun, prepare_run_dir


def run_training(
    cfg: RunConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    log: Log = print,
    stream: TextIO | None = None,
    progress_prefix: str = "",
    callbacks: Sequence[Callback] = (),
    dist: DistInfo = SINGLE,
    live_progress: bool | None = None,
) -> dict[str, Any]:
    """Train ``cfg`` into ``run_dir`` (or continue it with ``resume``); return final metrics.

    Under torchrun (``dist``), every rank runs this function; rank 0 alone logs and writes.
    """
    log = log if dist.is_main else silent
    rd = prepare_run_dir(run_dir, resume, dist)
    setup = assemble(cfg, dist=dist, resume=resume, log=log)
    run = TrainingRun(setup, rd)
    state = run.restore() if resume else run.start()
    data, ds = setup.data, setup.dataset
    log(
        f"{'resuming' if resume else 'training'} {cfg.model.name} on {ds.name} "
        f"({ds.source}): {data.train.num_samples * dist.world_size:,} train images per "
        f"epoch, {setup.runtime.describe()}"
        f"{f', {dist.world_size} processes' if dist.enabled else ''}"
    )
    trainer = Trainer(
        epochs=setup.epochs, runtime=setup.runtime, grad_clip=cfg.train.grad_clip,
        eval_every=cfg.train.eval_every, dist=dist,
        callbacks=[*run.callbacks(stream, progress_prefix, live_progress), *callbacks],
    )  # fmt: skip
    state = trainer.fit(
        run.train_model(), setup.task, setup.optimizer, setup.scheduler, data.train,
        run.evaluate, state,
    )  # fmt: skip
    return run.finish(state)


@dataclass
class InMemoryTraining:
    """A finished in-memory training: the model with its reported weights, history, data."""

    model: nn.Module
    history: list[dict[str, float]]
    data: DataBundle
    setup: TrainingSetup


def train_in_memory(
    cfg: RunConfig,
    *,
    model: nn.Module | None = None,
    data: DataBundle | None = None,
    task: Task | None = None,
    epochs: int | None = None,
    log: Log = print,
    callbacks: Sequence[Callback] = (),
    resume: ResumePoint | None = None,
) -> InMemoryTraining:
    """Train without a run directory, with every practice of ``cfg`` (max-norm, EMA, early
    stopping with its best weights restored, fine-tuning LR scales, frozen stages); the keys
    that need a directory (snapshots, TensorBoard) are refused. ``model=None`` builds the
    config's model; ``task`` replaces its loss (distillation). With ``resume`` the training
    saves itself after every epoch and continues from its file if one exists."""
    setup = assemble(cfg, model=model, data=data, task=task, epochs=epochs, log=log)
    if cfg.data.val_split > 0 and setup.data.val is None:
        raise ConfigError("data.val_split: the data bundle given has no validation split")
    practice = config_callbacks(setup)
    s = setup

    def evaluate_splits(m: nn.Module) -> dict[str, float]:
        out: dict[str, float] = {}
        for split, loader in (("val", s.data.val), ("test", s.data.test)):
            if loader is not None:
                res = evaluate(m, loader, num_classes=s.data.num_classes,
                               autocast=s.runtime.autocast)  # fmt: skip
                out.update(res.metrics(f"{split}_"))
        return out

    state, saver = TrainState(), []
    if resume is not None:
        state = resume.restore(s.model, s.task, s.optimizer, s.scheduler) or state
        if state.epoch:
            log(f"continuing from {resume.path} after epoch {state.epoch}/{s.epochs}")
        saver = [resume.saver(s.model, s.task, s.optimizer, s.scheduler)]
    # The saver comes after the constraint callbacks, so it saves the constrained weights.
    trainer = Trainer(
        epochs=s.epochs, runtime=s.runtime, grad_clip=cfg.train.grad_clip,
        eval_every=cfg.train.eval_every,
        callbacks=[*practice.callbacks, *callbacks, *saver, EpochLog(log, s.epochs)],
    )  # fmt: skip
    state = trainer.fit(s.model, s.task, s.optimizer, s.scheduler, s.data.train,
                        evaluate_splits, state)  # fmt: skip
    practice.restore_best(cfg)
    final = practice.final_model(s.model)
    if final is not s.model:  # the average is what was evaluated: it becomes the model
        s.model.load_state_dict(final.state_dict())
    return InMemoryTraining(s.model, state.history, s.data, s)


def train_model(
    model: nn.Module,
    cfg: RunConfig,
    *,
    data: DataBundle | None = None,
    task: Task | None = None,
    epochs: int | None = None,
    log: Log = print,
    callbacks: Sequence[Callback] = (),
    resume: ResumePoint | None = None,
) -> tuple[list[dict[str, float]], DataBundle]:
    """Train an existing model in memory (:func:`train_in_memory`); for fine-tuning after
    compression, distillation students and ensemble members. Returns the per-epoch history
    and the data bundle (reusable for evaluation)."""
    done = train_in_memory(cfg, model=model, data=data, task=task, epochs=epochs, log=log,
                           callbacks=callbacks, resume=resume)  # fmt: skip
    return done.history, done.data


def run_lr_find(
    cfg: RunConfig, *, start: float = 1e-7, end: float = 10.0, steps: int = 100,
    log: Log = print,
) -> LRFindResult:  # fmt: skip
    """LR range test for the model, data, loss and optimiser of ``cfg`` (handbook §11.2.2):
    the same assembly as ``run_training`` (fine-tuning LR scales and frozen stages included),
    but a sweep instead of the loop. Practices that act across epochs (early stopping, EMA,
    max-norm, snapshots) do not fit a sweep of single steps and are refused by name."""
    refused = [
        (key, on)
        for key, on in (
            ("train.early_stopping.enabled", cfg.train.early_stopping.enabled),
            ("train.ema.enabled", cfg.train.ema.enabled),
            ("regularization.max_norm", cfg.regularization.max_norm is not None),
            ("train.snapshots", cfg.train.snapshots != "off"),
        )
        if on
    ]
    if refused:
        raise ConfigError(
            f"{refused[0][0]}: the LR range test trains one batch per learning rate and cannot "
            "apply it; unset it for the sweep (it stays valid for cnnlab train)"
        )
    setup = assemble(cfg, log=log)
    return lr_find(
        setup.model, setup.task, setup.make_optimizer, setup.data.train,
        start=start, end=end, steps=steps, seed=cfg.seed,
    )  # fmt: skip
