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
) -> dict[str, Any]:
    """Train ``cfg`` into ``run_dir`` (or continue it with ``resume``); return final metrics."""
    rd = RunDir(run_dir).create(resume=resume)
    seed_everything(cfg.seed)
    dataset = load_dataset(
        cfg.data.dataset,
        cfg.data.data_dir,
        allow_sample=cfg.data.allow_sample,
        **dict(cfg.data.params),
    )
    if dataset.notice:
        log(f"note: {dataset.notice}")
    spec = model_spec(cfg, dataset)
    model = build_model_from_spec(spec)
    runtime = resolve_runtime(cfg.train, model)
    model = runtime.prepare_model(model)
    data = build_data(
        cfg.data,
        seed=cfg.seed,
        device=runtime.device,
        channels_last=runtime.channels_last,
        dataset=dataset,
    )
    task = build_task(cfg, data, runtime.device)
    optimizer = build_optimizer(model, cfg.optim)
    steps_per_epoch = len(data.train)
    scheduler = build_scheduler(
        optimizer,
        cfg.schedule,
        total_steps=cfg.train.epochs * steps_per_epoch,
        steps_per_epoch=steps_per_epoch,
    )
    state = TrainState()
    if resume:
        state = _restore(rd, model, optimizer, scheduler)
        log(f"resuming {rd.path} at epoch {state.epoch}, step {state.step}")
    else:
        rd.write_text(RunDir.CONFIG, dump_config(cfg))
        rd.write_json(
            RunDir.ENV, {**environment_info(runtime.device), "runtime": runtime.describe()}
        )
    log(
        f"training {cfg.model.name} on {dataset.name} ({dataset.source}): "
        f"{data.train.num_samples:,} train images, {runtime.describe()}"
    )

    meta_base = {"model": spec, "data": _data_meta(cfg, data), "config": cfg.to_dict()}

    def save(st: TrainState) -> None:
        _check_finite_params(model, st)
        meta = {**meta_base, "state": st.to_dict()}
        save_checkpoint(
            rd.checkpoint, model=model, optimizer=optimizer, scheduler=scheduler, meta=meta
        )

    last_test: dict[str, EvalResult] = {}

    def eval_fn(m: nn.Module) -> dict[str, float]:
        out: dict[str, float] = {}
        if data.val is not None:
            out.update(
                evaluate(
                    m, data.val, num_classes=data.num_classes, autocast=runtime.autocast
                ).metrics("val_")
            )
        res = evaluate(
            m, data.test, num_classes=data.num_classes, autocast=runtime.autocast, keep_outputs=True
        )
        last_test["result"] = res
        return {**out, **res.metrics("test_")}

    train_model = torch.compile(model) if runtime.compile else model
    trainer = Trainer(
        epochs=cfg.train.epochs,
        runtime=runtime,
        grad_clip=cfg.train.grad_clip,
        eval_every=cfg.train.eval_every,
        callbacks=[
            *(
                [ProgressBar(cfg.train.epochs, stream, progress_prefix)]
                if cfg.train.progress
                else []
            ),
            HistoryWriter(rd.file(RunDir.HISTORY)),
            Checkpointer(save, cfg.train.checkpoint_every, cfg.train.checkpoint_steps),
            *callbacks,
        ],
    )
    state = trainer.fit(train_model, task, optimizer, scheduler, data.train, eval_fn, state)
    final = last_test.get("result") or evaluate(
        train_model,
        data.test,
        num_classes=data.num_classes,
        autocast=runtime.autocast,
        keep_outputs=True,
    )
    save_predictions(rd.file("predictions.safetensors"), final)
    save_examples(rd.file("examples.safetensors"), dataset.test_images, final.targets, final.probs)
    metrics = final_metrics(cfg, data, runtime, state, final, model)
    rd.write_json(RunDir.METRICS, metrics)
    return metrics


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


def _restore(rd: RunDir, model, optimizer, scheduler) -> TrainState:
    ckpt = load_checkpoint(rd.checkpoint)
    ckpt.load_model(model)
    ckpt.load_optimizer(optimizer)
    if "scheduler" in ckpt.meta:
        scheduler.load_state_dict(ckpt.meta["scheduler"])
    ckpt.restore_rng()
    if "state" not in ckpt.meta:
        raise CheckpointError(f"{rd.checkpoint}: holds no training state (cannot resume)")
    return TrainState.from_dict(ckpt.meta["state"])


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
