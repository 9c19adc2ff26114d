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

from cnnlab.config import RunConfig
from cnnlab.data.bundle import DataBundle, build_data
from cnnlab.data.datasets import ImageDataset, load_dataset
from cnnlab.engine.callbacks import Callback, EpochLog
from cnnlab.engine.checkpoint import load_checkpoint
from cnnlab.engine.distributed import SINGLE, DistInfo
from cnnlab.engine.finetune import freeze_stages, load_pretrained, lr_scales, model_stages
from cnnlab.engine.mix_tasks import MIX_TASKS
from cnnlab.engine.regularization import PenalizedTask
from cnnlab.engine.resume import ResumePoint
from cnnlab.engine.runtime import resolve_runtime
from cnnlab.engine.tasks import Task
from cnnlab.engine.tasks import build_task as make_loss_task
from cnnlab.engine.trainer import Trainer
from cnnlab.evaluation.evaluate import evaluate
from cnnlab.models import create_model
from cnnlab.nn.init import apply_init, lsuv_init
from cnnlab.optim.optimizers import build_optimizer
from cnnlab.optim.schedules import build_scheduler
from cnnlab.training.run_directory import TrainingRun, prepare_run_dir, silent

Log = Callable[[str], None]


def seed_everything(seed: int) -> None:
    """Seed torch (all devices) and Python; cnnlab's own randomness uses torch only."""
    random.seed(seed)
    torch.manual_seed(seed)


def build_task(cfg: RunConfig, data: DataBundle, device: torch.device) -> Task:
    """What a step computes: the loss (a Task itself for center loss / L-Softmax), optionally
    mixed (mixup, cutmix) and with explicit l1/l2 penalties (handbook ch. 9-10)."""
    task = make_loss_task(
        cfg.loss.name, num_classes=data.num_classes, class_counts=data.class_counts,
        **dict(cfg.loss.params),
    )  # fmt: skip
    if cfg.loss.mix is not None:
        options = dict(cfg.loss.mix)
        task = MIX_TASKS[options.pop("name")](task.loss, **options)
    reg = cfg.regularization
    if reg.l1 or reg.l2:
        task = PenalizedTask(task, l1=reg.l1, l2=reg.l2)
    return task.to(device)


def prepare_model(cfg: RunConfig, model: nn.Module, *, resume: bool, log: Log) -> None:
    """Pretrained weights, initialisation and frozen stages, before the run starts."""
    if resume:
        return  # everything comes from the run's own checkpoint
    ft = cfg.finetune
    if ft.checkpoint is not None:
        load_pretrained(model, ft.checkpoint, log)
    elif cfg.model.init not in (None, "lsuv"):
        apply_init(model, cfg.model.init)
    if ft.freeze_stages:
        frozen = freeze_stages(model, ft.freeze_stages)
        log(f"fine-tuning: {len(frozen)} of {len(model_stages(model))} stages frozen")


def load_run_dataset(cfg: RunConfig, log: Log = print) -> ImageDataset:
    """The data set of ``cfg`` (its notice, e.g. "using the embedded sample", goes to ``log``)."""
    dataset = load_dataset(
        cfg.data.dataset, cfg.data.data_dir, allow_sample=cfg.data.allow_sample,
        **dict(cfg.data.params),
    )  # fmt: skip
    if dataset.notice:
        # The full notice once per process; later runs (compare, studies) get a reminder.
        seen = dataset.notice in _NOTICES_SHOWN
        _NOTICES_SHOWN.add(dataset.notice)
        reminder = f"note: {dataset.name}: {dataset.source}, not the full set (see the note above)"
        log(reminder if seen else f"note: {dataset.notice}")
    return dataset


_NOTICES_SHOWN: set[str] = set()


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
    log = log if dist.is_main else silent
    rd = prepare_run_dir(run_dir, resume, dist)
    seed_everything(cfg.seed)
    dataset = load_run_dataset(cfg, log)
    spec = model_spec(cfg, dataset)
    model = build_model_from_spec(spec)
    prepare_model(cfg, model, resume=resume, log=log)
    runtime = resolve_runtime(cfg.train, model, dist)
    model = runtime.prepare_model(model)
    data = build_data(
        cfg.data, seed=cfg.seed, device=runtime.device, channels_last=runtime.channels_last,
        dataset=dataset, rank=dist.rank, world_size=dist.world_size,
    )  # fmt: skip
    if cfg.model.init == "lsuv" and not resume and cfg.finetune.checkpoint is None:
        lsuv_init(model, next(iter(data.train)))  # data-dependent init (§7.3)
    task = build_task(cfg, data, runtime.device)
    optimizer = build_optimizer(model, cfg.optim, scales=_lr_scales(cfg, model))
    scheduler = build_scheduler(
        optimizer, cfg.schedule, total_steps=cfg.train.epochs * len(data.train),
        steps_per_epoch=len(data.train),
    )  # fmt: skip
    run = TrainingRun(cfg, rd, dist, spec, model, task, runtime, data, optimizer, scheduler)
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


def _lr_scales(cfg: RunConfig, model: nn.Module):
    ft = cfg.finetune
    if ft.stage_lr_decay == 1.0 and ft.head_lr_mult == 1.0:
        return None
    return lr_scales(model, ft)


def run_evaluation(
    checkpoint: str | Path,
    *,
    data_dir: str | None = None,
    log: Log = print,
    batch_size: int = 1000,
    split: str = "test",
    tta: str | None = None,
) -> dict[str, Any]:
    """Rebuild the model of a saved run, load its weights, evaluate on its test set.

    ``split="train"`` evaluates on the data set's whole training set instead (in eval mode: no
    dropout, batch-norm running statistics, no augmentation), for comparing with claims that
    were most likely training accuracy (case-study issue). The keys are then ``train_acc`` and
    ``train_loss`` (``test_acc``/``test_loss`` otherwise).

    ``tta`` names a test-time augmentation preset (``flip``, ``shift``, ``flip_shift``; handbook
    §13.1.1, ``cnnlab.evaluation.tta``): the model's class probabilities are averaged over those
    views of each image. It only helps a model that trained with the same transformations
    (a model never shown mirrored shoes scores far lower on them: benchmarks/ensembles)."""
    from cnnlab.config import TrainConfig

    if split not in ("test", "train"):
        raise ValueError(f"split: expected 'test' or 'train', found {split!r}")
    ckpt = load_checkpoint(checkpoint)
    spec, dmeta = ckpt.meta["model"], ckpt.meta["data"]
    model = build_model_from_spec(spec)
    ckpt.load_model(model)
    # The run's own precision and memory layout (a run trained in fp32 is evaluated in fp32
    # even where "auto" would pick bf16), on this machine's device.
    saved = (ckpt.meta.get("config") or {}).get("train", {})
    as_trained = {k: saved[k] for k in ("precision", "channels_last") if k in saved}
    runtime = resolve_runtime(TrainConfig(**as_trained), model)
    model = runtime.prepare_model(model)
    if tta is not None:
        from cnnlab.evaluation.tta import TTA

        model = TTA(model, tta)
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

    images, labels = (
        (dataset.test_images, dataset.test_labels)
        if split == "test"
        else (dataset.train_images, dataset.train_labels)
    )
    loader = BatchLoader(
        images,
        labels,
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
        "split": split,
        "tta": tta,
        f"{split}_acc": res.accuracy,
        f"{split}_loss": res.loss,
        "num_images": int(labels.numel()),
        "params": n_params,
        "train_seconds": ckpt.meta.get("state", {}).get("train_seconds"),
        "infer_images_per_s": res.images_per_second,
        "precision": runtime.precision,
        split: res.report(),
    }


def run_lr_find(
    cfg: RunConfig, *, start: float = 1e-7, end: float = 10.0, steps: int = 100,
    log: Log = print,
):  # fmt: skip
    """LR range test for the model, data, loss and optimiser of ``cfg`` (handbook §11.2.2):
    the same building blocks as ``run_training``, but a sweep instead of the loop."""
    from cnnlab.optim.lr_finder import lr_find

    seed_everything(cfg.seed)
    dataset = load_run_dataset(cfg, log)
    model = build_model_from_spec(model_spec(cfg, dataset))
    prepare_model(cfg, model, resume=False, log=log)
    runtime = resolve_runtime(cfg.train, model)
    model = runtime.prepare_model(model)
    data = build_data(cfg.data, seed=cfg.seed, device=runtime.device,
                      channels_last=runtime.channels_last, dataset=dataset)  # fmt: skip
    task = build_task(cfg, data, runtime.device)
    return lr_find(
        model, task, lambda m: build_optimizer(m, cfg.optim), data.train,
        start=start, end=end, steps=steps, seed=cfg.seed,
    )  # fmt: skip


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
    """Train an existing model in memory (no run directory) with the data, loss, optimiser and
    schedule of ``cfg``; for fine-tuning after compression, distillation students and ensemble
    members. ``task`` replaces the config's loss (e.g. distillation). With ``resume`` the
    training saves itself after every epoch and continues from its file if one exists.
    Returns the per-epoch history and the data bundle (reusable for evaluation)."""
    from cnnlab.engine.state import TrainState

    seed_everything(cfg.seed)
    epochs = epochs if epochs is not None else cfg.train.epochs
    runtime = resolve_runtime(cfg.train, model)
    model = runtime.prepare_model(model)
    if data is None:
        dataset = load_run_dataset(cfg, log)
        data = build_data(cfg.data, seed=cfg.seed, device=runtime.device,
                          channels_last=runtime.channels_last, dataset=dataset)  # fmt: skip
    # A network inside the task (a distillation teacher) runs in the student's memory format:
    # the full ResNet-20 teacher's forward pass is ~1.2x faster in NHWC on this CPU.
    task = runtime.prepare_model(task or build_task(cfg, data, runtime.device))
    optimizer = build_optimizer(model, cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.schedule, total_steps=epochs * len(data.train),
                                steps_per_epoch=len(data.train))  # fmt: skip

    def evaluate_test(m: nn.Module) -> dict[str, float]:
        res = evaluate(m, data.test, num_classes=data.num_classes, autocast=runtime.autocast)
        return res.metrics("test_")

    state, saver = TrainState(), []
    if resume is not None:
        state = resume.restore(model, task, optimizer, scheduler) or state
        if state.epoch:
            log(f"continuing from {resume.path} after epoch {state.epoch}/{epochs}")
        saver = [resume.saver(model, task, optimizer, scheduler)]
    # The saver comes after the constraint callbacks, so it saves the constrained weights.
    trainer = Trainer(epochs=epochs, runtime=runtime, grad_clip=cfg.train.grad_clip,
                      callbacks=[*callbacks, *saver, EpochLog(log, epochs)])  # fmt: skip
    state = trainer.fit(model, task, optimizer, scheduler, data.train, evaluate_test, state)
    return state.history, data
