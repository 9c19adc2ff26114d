"""The spine: data -> model -> loss -> optimiser/schedule -> trainer -> evaluation -> report.

``run_training`` reads top to bottom in the order data flows; everything it calls is a
building block that can be used on its own. ``run_evaluation`` re-evaluates a saved run.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import torch
import torch.nn as nn

from cnnlab.config import RunConfig, dump_config
from cnnlab.data.bundle import DataBundle, build_data
from cnnlab.data.datasets import ImageDataset, load_dataset
from cnnlab.engine.callbacks import Callback, Checkpointer, HistoryWriter, ProgressBar
from cnnlab.engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from cnnlab.engine.distributed import (
    SINGLE,
    DistInfo,
    barrier,
    broadcast_object,
    gather_rng_states,
    reduce_eval,
    shard_loader,
)
from cnnlab.engine.runtime import Runtime, resolve_runtime
from cnnlab.engine.state import TrainState
from cnnlab.engine.tasks import ClassificationTask, Task
from cnnlab.engine.trainer import Trainer
from cnnlab.evaluation.evaluate import EvalResult, evaluate
from cnnlab.losses import LOSSES
from cnnlab.models import create_model
from cnnlab.optim.optimizers import build_optimizer
from cnnlab.optim.schedules import build_scheduler
from cnnlab.reports.environment import environment_info
from cnnlab.reports.predictions import save_examples, save_predictions
from cnnlab.reports.rundir import RunDir

Log = Callable[[str], None]


def seed_everything(seed: int) -> None:
    """Seed torch (all devices) and Python; cnnlab's own randomness uses torch only."""
    random.seed(seed)
    torch.manual_seed(seed)


def build_task(cfg: RunConfig, data: DataBundle, device: torch.device) -> Task:
    loss = LOSSES.build(
        cfg.loss.name,
        num_classes=data.num_classes,
        class_counts=data.class_counts,
        **dict(cfg.loss.params),
    )
    return ClassificationTask(loss).to(device)


def model_spec(cfg: RunConfig, dataset: ImageDataset) -> dict[str, Any]:
    """Everything needed to rebuild the model later (stored in checkpoints)."""
    return {
        "name": cfg.model.name,
        "params": dict(cfg.model.params),
        "num_classes": dataset.num_classes,
        "in_chans": dataset.in_chans,
        "input_size": dataset.image_size,
    }


def build_model_from_spec(spec: dict[str, Any]) -> nn.Module:
    return create_model(
        spec["name"],
        num_classes=spec["num_classes"],
        in_chans=spec["in_chans"],
        input_size=spec["input_size"],
        **spec["params"],
    )


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
    log = log if dist.is_main else _silent
    rd = _prepare_run_dir(run_dir, resume, dist)
    seed_everything(cfg.seed)
    dataset = load_dataset(
        cfg.data.dataset, cfg.data.data_dir, allow_sample=cfg.data.allow_sample,
        **dict(cfg.data.params),
    )  # fmt: skip
    if dataset.notice:
        log(f"note: {dataset.notice}")
    spec = model_spec(cfg, dataset)
    model = build_model_from_spec(spec)
    runtime = resolve_runtime(cfg.train, model, dist)
    model = runtime.prepare_model(model)
    data = build_data(
        cfg.data, seed=cfg.seed, device=runtime.device, channels_last=runtime.channels_last,
        dataset=dataset, rank=dist.rank, world_size=dist.world_size,
    )  # fmt: skip
    task = build_task(cfg, data, runtime.device)
    optimizer = build_optimizer(model, cfg.optim)
    scheduler = build_scheduler(
        optimizer, cfg.schedule, total_steps=cfg.train.epochs * len(data.train),
        steps_per_epoch=len(data.train),
    )  # fmt: skip
    run = _Run(cfg, rd, dist, spec, model, runtime, data, optimizer, scheduler)
    state = run.restore() if resume else run.start()
    log(
        f"{'resuming' if resume else 'training'} {cfg.model.name} on {dataset.name} "
        f"({dataset.source}): {data.train.num_samples * dist.world_size:,} train images per "
        f"epoch, {runtime.describe()}{f', {dist.world_size} processes' if dist.enabled else ''}"
    )
    trainer = Trainer(
        epochs=cfg.train.epochs, runtime=runtime, grad_clip=cfg.train.grad_clip,
        eval_every=cfg.train.eval_every, dist=dist,
        callbacks=[*run.callbacks(stream, progress_prefix, live_progress), *callbacks],
    )  # fmt: skip
    state = trainer.fit(
        run.train_model(), task, optimizer, scheduler, data.train, run.evaluate, state
    )
    return run.finish(state)


def _silent(msg: str) -> None:
    pass


def _prepare_run_dir(run_dir: str | Path, resume: bool, dist: DistInfo) -> RunDir:
    """Every rank checks the directory (same verdict everywhere); rank 0 creates it."""
    rd = RunDir(run_dir)
    rd.check(resume=resume)
    barrier(dist)  # nobody may see rank 0's new files before checking
    if dist.is_main:
        rd.create(resume=resume)
    barrier(dist)
    return rd


class _Run:
    """What a training run needs besides the loop: saving, evaluating, finishing."""

    def __init__(self, cfg, rd, dist, spec, model, runtime, data, optimizer, scheduler):
        self.cfg, self.rd, self.dist, self.spec = cfg, rd, dist, spec
        self.model, self.runtime, self.data = model, runtime, data
        self.optimizer, self.scheduler = optimizer, scheduler
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
        ckpt.load_model(self.model)
        ckpt.load_optimizer(self.optimizer)
        if "scheduler" in ckpt.meta:
            self.scheduler.load_state_dict(ckpt.meta["scheduler"])
        ckpt.restore_rng(self.dist.rank)
        if "state" not in ckpt.meta:
            raise CheckpointError(f"{self.rd.checkpoint}: holds no training state (cannot resume)")
        return TrainState.from_dict(ckpt.meta["state"])

    def save(self, state: TrainState) -> None:
        _check_finite_params(self.model, state)
        rng = gather_rng_states(self.dist)  # collective: every rank takes part
        if self.dist.is_main:
            save_checkpoint(
                self.rd.checkpoint, model=self.model, optimizer=self.optimizer,
                scheduler=self.scheduler, meta={**self.meta, "state": state.to_dict()},
                rng_states=rng,
            )  # fmt: skip

    def callbacks(self, stream: TextIO | None, prefix: str, live: bool | None) -> list[Callback]:
        cbs: list[Callback] = [
            Checkpointer(self.save, self.cfg.train.checkpoint_every,
                         self.cfg.train.checkpoint_steps)
        ]  # fmt: skip
        if self.dist.is_main:
            cbs.append(HistoryWriter(self.rd.file(RunDir.HISTORY)))
            if self.cfg.train.progress:
                cbs.append(ProgressBar(self.cfg.train.epochs, stream, prefix, live))
        return cbs

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
        if self.dist.is_main:
            final = self.last_test or self._eval(self.model, self.data.test, keep=True)
            save_predictions(self.rd.file("predictions.safetensors"), final)
            save_examples(self.rd.file("examples.safetensors"), self.data.dataset.test_images,
                          final.targets, final.probs)  # fmt: skip
            metrics = final_metrics(self.cfg, self.data, self.runtime, state, final, self.model)
            metrics["processes"] = self.dist.world_size
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


def run_evaluation(
    checkpoint: str | Path,
    *,
    data_dir: str | None = None,
    log: Log = print,
    batch_size: int = 1000,
) -> dict[str, Any]:
    """Rebuild the model of a saved run, load its weights, evaluate on its test set."""
    from cnnlab.config import TrainConfig

    ckpt = load_checkpoint(checkpoint)
    spec, dmeta = ckpt.meta["model"], ckpt.meta["data"]
    model = build_model_from_spec(spec)
    ckpt.load_model(model)
    runtime = resolve_runtime(TrainConfig(), model)
    model = runtime.prepare_model(model)
    if data_dir is None and dmeta.get("data_dir") and Path(dmeta["data_dir"]).is_dir():
        data_dir = dmeta["data_dir"]  # where the run found its data, if still there
    dataset = load_dataset(dmeta["dataset"], data_dir, **dmeta.get("params", {}))
    if dataset.notice:
        log(f"note: {dataset.notice}")
    if dataset.source != dmeta.get("source"):
        log(
            f"note: the run was trained with data from {dmeta.get('source')!r}; evaluating on "
            f"{dataset.source!r}"
        )
    from cnnlab.data.loader import BatchLoader, Normalizer

    loader = BatchLoader(
        dataset.test_images,
        dataset.test_labels,
        batch_size=batch_size,
        normalizer=Normalizer(tuple(dmeta["mean"]), tuple(dmeta["std"])),
        device=runtime.device,
        channels_last=runtime.channels_last,
    )
    res = evaluate(model, loader, num_classes=dataset.num_classes, autocast=runtime.autocast)
    n_params = sum(p.numel() for p in model.parameters())
    return {
        "model": spec["name"],
        "dataset": dmeta["dataset"],
        "data_source": dataset.source,
        "test_acc": res.accuracy,
        "test_loss": res.loss,
        "params": n_params,
        "train_seconds": ckpt.meta.get("state", {}).get("train_seconds"),
        "infer_images_per_s": res.images_per_second,
        "test": res.report(),
    }
