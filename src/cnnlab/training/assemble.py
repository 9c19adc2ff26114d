"""The one place a training is assembled from a config: data -> model -> loss -> optimiser/schedule.

``cnnlab train`` and ``compare`` (into a run directory), compression steps, distillation,
ensemble members and the experiments (in memory) and the LR finder all call :func:`assemble`;
what differs between them (a given model or data bundle, a task such as distillation, the
number of epochs, DDP) is an argument. :func:`config_callbacks` turns the config's training
practices (max-norm, early stopping, reduce-on-plateau, snapshots, TensorBoard, EMA) into
callbacks, and refuses, naming the key, the ones a caller cannot honour (snapshots without a
run directory). docs/architecture.md, "The spine of one training", walks through the order.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from cnnlab.config import ConfigError, RunConfig
from cnnlab.data.bundle import DataBundle, build_data
from cnnlab.data.datasets import ImageDataset, load_dataset
from cnnlab.engine.callbacks import Callback, TensorBoardLogger
from cnnlab.engine.distributed import SINGLE, DistInfo
from cnnlab.engine.early_stopping import EarlyStopping
from cnnlab.engine.ema import EMA
from cnnlab.engine.finetune import freeze_stages, load_pretrained, lr_scales, model_stages
from cnnlab.engine.mix_tasks import MIX_TASKS
from cnnlab.engine.regularization import MaxNorm, PenalizedTask
from cnnlab.engine.runtime import Runtime, resolve_runtime
from cnnlab.engine.snapshots import snapshot_callbacks
from cnnlab.engine.tasks import Task
from cnnlab.engine.tasks import build_task as make_loss_task
from cnnlab.models.spec import build_model, model_spec
from cnnlab.nn.init import apply_init, lsuv_init
from cnnlab.optim.optimizers import build_optimizer
from cnnlab.optim.schedules import PlateauFactor, build_scheduler
from cnnlab.trained.run import load

Log = Callable[[str], None]


def silent(msg: str) -> None:
    """A log that drops everything (ranks other than 0, quiet callers)."""


def seed_everything(seed: int) -> None:
    """Seed torch (all devices) and Python; cnnlab's own randomness uses torch only."""
    random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class TrainingSetup:
    """Everything one training needs, built from a config by :func:`assemble`."""

    cfg: RunConfig
    spec: dict[str, Any]  # cnnlab.models.spec: rebuilds the network later
    model: nn.Module  # on the runtime's device and memory layout
    runtime: Runtime
    data: DataBundle
    task: Task
    optimizer: torch.optim.Optimizer
    scheduler: Any
    epochs: int
    dist: DistInfo = SINGLE
    built_model: bool = True  # False: the caller gave the model (its weights are the caller's)
    notes: list[str] = field(default_factory=list)

    @property
    def dataset(self) -> ImageDataset:
        return self.data.dataset

    def make_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        """Another optimiser of the config for ``model`` (the LR finder's fresh copies)."""
        return build_optimizer(model, self.cfg.optim, scales=_lr_scales(self.cfg, model))


def assemble(
    cfg: RunConfig,
    *,
    model: nn.Module | None = None,
    data: DataBundle | None = None,
    dataset: ImageDataset | None = None,
    task: Task | None = None,
    epochs: int | None = None,
    dist: DistInfo = SINGLE,
    resume: bool = False,
    log: Log = print,
) -> TrainingSetup:
    """Build a training from ``cfg``, honouring every key of its sections.

    With ``model=None`` the network is built from the config and prepared: the config's
    initialiser (``model.init``, LSUV after the data is ready) or fine-tuning weights
    (``finetune.checkpoint``), then frozen stages. A given ``model`` is trained as it is: its
    weights are the caller's (``model.init`` and ``finetune.checkpoint`` describe how it was
    made and are not applied again), but it gets frozen stages and per-stage learning rates.
    ``data``/``dataset`` reuse a bundle or a loaded data set; ``task`` replaces the config's
    loss (distillation); ``resume`` skips every initialisation (the run's checkpoint restores
    them).
    """
    seed_everything(cfg.seed)
    dataset = data.dataset if data is not None else dataset or load_run_dataset(cfg, log)
    spec = model_spec_of(cfg, dataset)
    built = model is None
    if built:
        model = build_model(spec)
        prepare_model(cfg, model, resume=resume, log=log)
    else:
        _freeze(cfg, model, log)
    runtime = resolve_runtime(cfg.train, model, dist)
    model = runtime.prepare_model(model)
    if data is None:
        data = build_data(
            cfg.data, seed=cfg.seed, device=runtime.device, channels_last=runtime.channels_last,
            dataset=dataset, rank=dist.rank, world_size=dist.world_size,
        )  # fmt: skip
    if built and cfg.model.init == "lsuv" and not resume and cfg.finetune.checkpoint is None:
        lsuv_init(model, next(iter(data.train)))  # data-dependent init (§7.3)
    # A network inside the task (a distillation teacher) runs in the student's memory format:
    # the full ResNet-20 teacher's forward pass is ~1.2x faster in NHWC on this CPU.
    task = task if task is not None else build_task(cfg, data, runtime.device)
    task = runtime.prepare_model(task)
    epochs = cfg.train.epochs if epochs is None else epochs
    optimizer = build_optimizer(model, cfg.optim, scales=_lr_scales(cfg, model))
    scheduler = build_scheduler(
        optimizer, cfg.schedule, total_steps=epochs * len(data.train),
        steps_per_epoch=len(data.train),
    )  # fmt: skip
    return TrainingSetup(
        cfg=cfg, spec=spec, model=model, runtime=runtime, data=data, task=task,
        optimizer=optimizer, scheduler=scheduler, epochs=epochs, dist=dist, built_model=built,
    )  # fmt: skip


def model_spec_of(cfg: RunConfig, dataset: ImageDataset) -> dict[str, Any]:
    """The model spec of ``cfg``'s network on ``dataset`` (``cnnlab.models.spec``)."""
    return model_spec(
        cfg.model.name, cfg.model.params, num_classes=dataset.num_classes,
        in_chans=dataset.in_chans, input_size=dataset.image_size,
    )  # fmt: skip


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
        # cnnlab.load: the weights the pretrained run reports (its best or averaged ones)
        pretrained = load(ft.checkpoint, device="cpu")
        theirs = pretrained.fresh_model().state_dict()
        load_pretrained(model, theirs, ft.checkpoint, pretrained.spec["name"], log)
    elif cfg.model.init not in (None, "lsuv"):
        apply_init(model, cfg.model.init)
    _freeze(cfg, model, log)


def _freeze(cfg: RunConfig, model: nn.Module, log: Log) -> None:
    if cfg.finetune.freeze_stages:
        frozen = freeze_stages(model, cfg.finetune.freeze_stages)
        log(f"fine-tuning: {len(frozen)} of {len(model_stages(model))} stages frozen")


def _lr_scales(cfg: RunConfig, model: nn.Module):
    ft = cfg.finetune
    if ft.stage_lr_decay == 1.0 and ft.head_lr_mult == 1.0:
        return None
    return lr_scales(model, ft)


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


@dataclass
class PracticeCallbacks:
    """The config's training practices as callbacks, in the order they must run."""

    callbacks: list[Callback]
    early_stopping: EarlyStopping | None = None
    ema: EMA | None = None

    def restore_best(self, cfg: RunConfig) -> bool:
        """Put early stopping's best weights back when the config asks (True if it did)."""
        es = self.early_stopping
        return es is not None and cfg.train.early_stopping.restore_best and es.restore()

    def final_model(self, model: nn.Module) -> nn.Module:
        """The network whose weights the training reports: the average when EMA is on."""
        return self.ema.module if self.ema is not None and self.ema.updates else model


def config_callbacks(
    setup: TrainingSetup,
    *,
    run_dir: Path | None = None,
    save_best: Callable[[dict[str, torch.Tensor]], None] | None = None,
    best_state: dict[str, torch.Tensor] | None = None,
) -> PracticeCallbacks:
    """Constraints first (max-norm), then the weight average (EMA, which evaluation then sees),
    then stop decisions (early stopping, plateau), then what needs a directory (snapshots,
    TensorBoard). Without ``run_dir`` (an in-memory training) the keys that write files are
    refused with a message naming them."""
    cfg = setup.cfg
    cbs: list[Callback] = []
    reg, es_cfg, t = cfg.regularization, cfg.train.early_stopping, cfg.train
    if reg.max_norm is not None:
        cbs.append(MaxNorm(reg.max_norm))
    ema = None
    if t.ema.enabled:
        ema = EMA(setup.model, decay=t.ema.decay, every=t.ema.every, warmup=t.ema.warmup,
                  bn=t.ema.bn)  # fmt: skip
        cbs.append(ema)
    es = None
    if es_cfg.enabled:
        # With EMA on, the evaluated (and so the best) weights are the average's.
        es = EarlyStopping(
            ema.module if ema is not None else setup.model, metric=es_cfg.metric,
            patience=es_cfg.patience, min_delta=es_cfg.min_delta, save_best=save_best,
        )  # fmt: skip
        es.best_state = best_state
        cbs.append(es)
    factor = getattr(setup.scheduler, "factor", None)
    if isinstance(factor, PlateauFactor):
        cbs.append(FeedPlateau(factor, "val_loss" if setup.data.val is not None else "train_loss"))
    if run_dir is None:
        for key, on in (("train.snapshots", t.snapshots != "off"),
                        ("train.tensorboard", t.tensorboard)):  # fmt: skip
            if on:
                raise ConfigError(
                    f"{key}: this training runs in memory, without a run directory to write "
                    "into; unset the key here (cnnlab train writes them)"
                )
        return PracticeCallbacks(cbs, es, ema)
    cbs += snapshot_callbacks(cfg, run_dir, setup.spec)
    if t.tensorboard and setup.dist.is_main:
        cbs.append(TensorBoardLogger(Path(run_dir) / "tensorboard"))
    return PracticeCallbacks(cbs, es, ema)


class FeedPlateau(Callback):
    """Give a reduce-on-plateau factor the epoch's validation (else training) loss."""

    def __init__(self, factor: PlateauFactor, metric: str) -> None:
        self.factor, self.metric = factor, metric

    def on_epoch_end(self, trainer: Any, state: Any, row: dict[str, float]) -> None:
        if self.metric in row:
            self.factor.observe(float(row[self.metric]))
