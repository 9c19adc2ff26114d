"""One training run's bookkeeping around the loop: the run directory, checkpoints, per-epoch
evaluation (sharded under DDP), early stopping and the final metrics. ``pipeline.run_training``
builds the pieces and hands them to ``TrainingRun``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TextIO

import torch
import torch.nn as nn

from cnnlab.config import RunConfig, dump_config
from cnnlab.data.bundle import DataBundle
from cnnlab.engine.callbacks import (
    Callback,
    Checkpointer,
    HistoryWriter,
    ProgressBar,
    TensorBoardLogger,
)
from cnnlab.engine.checkpoint import (
    atomic_write_bytes,
    load_checkpoint,
    save_checkpoint,
)
from cnnlab.engine.distributed import (
    DistInfo,
    barrier,
    broadcast_object,
    gather_rng_states,
    reduce_eval,
    shard_loader,
)
from cnnlab.engine.early_stopping import EarlyStopping
from cnnlab.engine.regularization import MaxNorm
from cnnlab.engine.runtime import Runtime
from cnnlab.engine.state import TrainState
from cnnlab.ensembles.snapshots import snapshot_callbacks
from cnnlab.evaluation.evaluate import EvalResult, evaluate
from cnnlab.optim.schedules import PlateauFactor
from cnnlab.reports.environment import environment_info
from cnnlab.reports.predictions import save_examples, save_predictions
from cnnlab.engine.rundir import RunDir

BEST = "best.safetensors"  # early stopping's best weights


def silent(msg: str) -> None:
    pass


def prepare_run_dir(run_dir: str | Path, resume: bool, dist: DistInfo) -> RunDir:
    """Every rank checks the directory (same verdict everywhere); rank 0 creates it."""
    rd = RunDir(run_dir)
    rd.check(resume=resume)
    barrier(dist)  # nobody may see rank 0's new files before checking
    if dist.is_main:
        rd.create(resume=resume)
    barrier(dist)
    return rd


class TrainingRun:
    """What a training run needs besides the loop: saving, evaluating, finishing."""

    def __init__(self, cfg, rd, dist, spec, model, task, runtime, data, optimizer, scheduler):
        self.cfg, self.rd, self.dist, self.spec = cfg, rd, dist, spec
        self.model, self.task, self.runtime, self.data = model, task, runtime, data
        self.optimizer, self.scheduler = optimizer, scheduler
        self.early_stopping: EarlyStopping | None = None
        self.last_test: EvalResult | None = None
        self.meta = {"model": spec, "data": _data_meta(cfg, data), "config": cfg.to_dict()}
        self.test_shard = shard_loader(data.test, dist)
        self.val_shard = shard_loader(data.val, dist) if data.val is not None else None

    def start(self) -> TrainState:
        if self.dist.is_main:
            self.rd.write_text(RunDir.CONFIG, dump_config(self.cfg))
            env = {**environment_info(self.runtime.device), "runtime": self.runtime.describe(),
                   "processes": self.dist.world_size}  # fmt: skip
            self.rd.write_json(RunDir.ENV, env)
        return TrainState()

    def restore(self) -> TrainState:
        ckpt = load_checkpoint(self.rd.checkpoint)
        state = ckpt.restore_training(self.model, self.task, self.optimizer, self.scheduler,
                                      self.dist.rank)  # fmt: skip
        factor = getattr(self.scheduler, "factor", None)
        if "schedule_factor" in ckpt.meta and hasattr(factor, "load_state_dict"):
            factor.load_state_dict(ckpt.meta["schedule_factor"])
        if self.rd.file(BEST).is_file():  # early stopping's best weights so far
            from safetensors.torch import load_file

            self._best_on_resume = load_file(self.rd.file(BEST))
        return state

    def save(self, state: TrainState) -> None:
        _check_finite_params(self.model, state)
        rng = gather_rng_states(self.dist)  # collective: every rank takes part
        if self.dist.is_main:
            save_checkpoint(
                self.rd.checkpoint, model=self.model, optimizer=self.optimizer,
                scheduler=self.scheduler,
                meta={**self.meta, "state": state.to_dict(), **self._factor_state()},
                rng_states=rng, modules={"task": self.task},
            )  # fmt: skip

    def callbacks(self, stream: TextIO | None, prefix: str, live: bool | None) -> list[Callback]:
        """In order: constraints, then stop decisions, then saving (so a checkpoint holds the
        step's final weights and the stop reason), then history and progress."""
        cbs: list[Callback] = []
        reg, es = self.cfg.regularization, self.cfg.train.early_stopping
        if reg.max_norm is not None:
            cbs.append(MaxNorm(reg.max_norm))
        if es.enabled:
            self.early_stopping = EarlyStopping(
                self.model, metric=es.metric, patience=es.patience, min_delta=es.min_delta,
                save_best=self._save_best if self.dist.is_main else None,
            )  # fmt: skip
            self.early_stopping.best_state = getattr(self, "_best_on_resume", None)
            cbs.append(self.early_stopping)
        factor = getattr(self.scheduler, "factor", None)
        if isinstance(factor, PlateauFactor):
            cbs.append(
                FeedPlateau(factor, "val_loss" if self.data.val is not None else "train_loss")
            )
        t = self.cfg.train
        cbs.append(Checkpointer(self.save, t.checkpoint_every, t.checkpoint_steps))
        cbs += snapshot_callbacks(self.cfg, self.rd.path, self.spec)
        if self.dist.is_main:
            cbs.append(HistoryWriter(self.rd.file(RunDir.HISTORY)))
            if t.tensorboard:
                cbs.append(TensorBoardLogger(self.rd.file("tensorboard")))
            if t.progress:
                cbs.append(ProgressBar(t.epochs, stream, prefix, live))
        return cbs

    def _factor_state(self) -> dict[str, Any]:
        factor = getattr(self.scheduler, "factor", None)
        return {"schedule_factor": factor.state_dict()} if hasattr(factor, "state_dict") else {}

    def _save_best(self, state: dict[str, torch.Tensor]) -> None:
        from safetensors.torch import save

        tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
        atomic_write_bytes(self.rd.file(BEST), save(tensors))

    def train_model(self) -> nn.Module:
        model = self.model
        if self.dist.enabled:
            if self.cfg.train.sync_bn:
                model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            ids = [self.runtime.device.index] if self.runtime.device.type == "cuda" else None
            model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        return torch.compile(model) if self.runtime.compile else model

    def _eval(self, model: nn.Module, loader, keep: bool = False) -> EvalResult:
        return evaluate(model, loader, num_classes=self.data.num_classes,
                        autocast=self.runtime.autocast, keep_outputs=keep)  # fmt: skip

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Per-epoch metrics; under DDP each rank takes a shard and the sums are reduced."""
        out: dict[str, float] = {}
        if self.val_shard is not None:
            out.update(reduce_eval(self._eval(model, self.val_shard), self.dist).metrics("val_"))
        keep = not self.dist.enabled  # single process: keep outputs for predictions.safetensors
        res = reduce_eval(self._eval(model, self.test_shard, keep), self.dist)
        self.last_test = res if keep else None
        return {**out, **res.metrics("test_")}

    def finish(self, state: TrainState) -> dict[str, Any]:
        """Predictions, examples and metrics.json (rank 0); every rank returns the metrics."""
        metrics = None
        es = self.early_stopping
        restored = es is not None and self.cfg.train.early_stopping.restore_best and es.restore()
        if restored:
            self.last_test = None  # the best epoch's weights are back: evaluate them afresh
        if self.dist.is_main:
            final = self.last_test or self._eval(self.model, self.data.test, keep=True)
            save_predictions(self.rd.file("predictions.safetensors"), final)
            save_examples(self.rd.file("examples.safetensors"), self.data.dataset.test_images,
                          final.targets, final.probs)  # fmt: skip
            metrics = final_metrics(self.cfg, self.data, self.runtime, state, final, self.model)
            metrics["processes"] = self.dist.world_size
            if restored:
                metrics["best_epoch"] = state.best_epoch
            self.rd.write_json(RunDir.METRICS, metrics)
        return broadcast_object(metrics, self.dist)


def _data_meta(cfg: RunConfig, data: DataBundle) -> dict[str, Any]:
    return {
        "dataset": cfg.data.dataset,
        "params": dict(cfg.data.params),
        "data_dir": cfg.data.data_dir,
        "source": data.dataset.source,
        "classes": list(data.classes),
        "mean": list(data.normalizer.mean),
        "std": list(data.normalizer.std),
    }


def _check_finite_params(model: nn.Module, state: TrainState) -> None:
    for name, p in model.named_parameters():
        if not torch.isfinite(p).all():
            raise RuntimeError(
                f"parameter {name} holds NaN/inf at step {state.step}; not saving a checkpoint "
                "(the previous one is kept). The learning rate is likely too large."
            )


def final_metrics(
    cfg: RunConfig,
    data: DataBundle,
    runtime: Runtime,
    state: TrainState,
    test: EvalResult,
    model: nn.Module,
) -> dict[str, Any]:
    """The run's headline numbers (``metrics.json``; ``--json`` prints them)."""
    from cnnlab.inspect.summary import summary

    info = summary(model, (data.in_chans, data.image_size, data.image_size))
    epochs = max(len(state.history), 1)
    last = state.history[-1] if state.history else {}
    metrics: dict[str, Any] = {
        "model": cfg.model.name,
        "dataset": cfg.data.dataset,
        "data_source": data.dataset.source,
        "test_acc": test.accuracy,
        "test_loss": test.loss,
        "params": info.params,
        "macs": info.macs,
        "epochs": len(state.history),
        "train_seconds": state.train_seconds,
        "seconds_per_epoch": state.train_seconds / epochs,
        "train_images_per_s": sum(h["train_images_per_s"] for h in state.history) / epochs,
        "infer_images_per_s": test.images_per_second,
        "train_acc": last.get("train_acc"),
        "train_loss": last.get("train_loss"),
        "precision": runtime.precision,
        "device": str(runtime.device),
        "seed": cfg.seed,
        "stopped_early": state.stop_reason,
        "test": test.report(),
    }
    if "val_acc" in last:
        metrics["val_acc"], metrics["val_loss"] = last["val_acc"], last["val_loss"]
    return metrics


class FeedPlateau(Callback):
    """Give a reduce-on-plateau factor the epoch's validation (else training) loss."""

    def __init__(self, factor: PlateauFactor, metric: str) -> None:
        self.factor, self.metric = factor, metric

    def on_epoch_end(self, trainer: Any, state: TrainState, row: dict[str, float]) -> None:
        if self.metric in row:
            self.factor.observe(float(row[self.metric]))
