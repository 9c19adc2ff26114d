"""A training run written to its run directory: checkpoints, per-epoch evaluation (sharded under
DDP), early stopping's best weights, the weight average, and the final metrics.

``spine.run_training`` assembles the training (``assemble.assemble``) and hands it here; the
directory's layout is ``cnnlab.engine.rundir``'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TextIO

import torch
import torch.nn as nn

from cnnlab.config import dump_config
from cnnlab.data.preprocess import preprocess_tensors
from cnnlab.engine.callbacks import Callback, Checkpointer, HistoryWriter, ProgressBar
from cnnlab.engine.checkpoint import atomic_write_bytes, load_checkpoint, save_checkpoint
from cnnlab.engine.distributed import (
    DistInfo,
    barrier,
    broadcast_object,
    gather_rng_states,
    reduce_eval,
    shard_loader,
)
from cnnlab.engine.rundir import RunDir
from cnnlab.engine.state import TrainState
from cnnlab.evaluation.evaluate import EvalResult, evaluate
from cnnlab.inspect.summary import summary
from cnnlab.reports.environment import environment_info
from cnnlab.reports.predictions import save_examples, save_predictions
from cnnlab.training.assemble import PracticeCallbacks, TrainingSetup, config_callbacks


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

    def __init__(self, setup: TrainingSetup, rd: RunDir) -> None:
        self.setup, self.rd = setup, rd
        self.cfg, self.dist = setup.cfg, setup.dist
        self.last_test: EvalResult | None = None
        self.practice: PracticeCallbacks | None = None
        self.meta = {"model": setup.spec, "data": data_meta(setup), "config": self.cfg.to_dict()}
        self.test_shard = shard_loader(setup.data.test, self.dist)
        val = setup.data.val
        self.val_shard = shard_loader(val, self.dist) if val is not None else None
        self._best_on_resume: dict[str, torch.Tensor] | None = None
        self._ema_on_resume: Any = None

    def start(self) -> TrainState:
        if self.dist.is_main:
            self.rd.write_text(RunDir.CONFIG, dump_config(self.cfg))
            runtime = self.setup.runtime
            env = {**environment_info(runtime.device), "runtime": runtime.describe(),
                   "processes": self.dist.world_size}  # fmt: skip
            self.rd.write_json(RunDir.ENV, env)
        return TrainState()

    def restore(self) -> TrainState:
        s = self.setup
        ckpt = load_checkpoint(self.rd.checkpoint)
        state = ckpt.restore_training(s.model, s.task, s.optimizer, s.scheduler, self.dist.rank)
        factor = getattr(s.scheduler, "factor", None)
        if "schedule_factor" in ckpt.meta and hasattr(factor, "load_state_dict"):
            factor.load_state_dict(ckpt.meta["schedule_factor"])
        if self.rd.file(RunDir.BEST).is_file():  # early stopping's best weights so far
            from safetensors.torch import load_file

            self._best_on_resume = load_file(self.rd.file(RunDir.BEST))
        self._ema_on_resume = ckpt  # the average is restored once its callback exists
        return state

    def save(self, state: TrainState) -> None:
        s = self.setup
        _check_finite_params(s.model, state)
        rng = gather_rng_states(self.dist)  # collective: every rank takes part
        if self.dist.is_main:
            modules: dict[str, nn.Module] = {"task": s.task}
            if self.practice is not None and self.practice.ema is not None:
                modules["ema"] = self.practice.ema.averaged
            save_checkpoint(
                self.rd.checkpoint, model=s.model, optimizer=s.optimizer, scheduler=s.scheduler,
                meta={**self.meta, "state": state.to_dict(), **self._factor_state()},
                rng_states=rng, modules=modules, tensors=preprocess_tensors(s.data.preprocess),
            )  # fmt: skip

    def callbacks(self, stream: TextIO | None, prefix: str, live: bool | None) -> list[Callback]:
        """In order: the config's practices (constraints, EMA, stop decisions, snapshots), then
        saving (so a checkpoint holds the step's final weights and the stop reason), then
        history and progress."""
        self.practice = config_callbacks(
            self.setup, run_dir=self.rd.path,
            save_best=self._save_best if self.dist.is_main else None,
            best_state=self._best_on_resume,
        )  # fmt: skip
        if self.practice.ema is not None and self._ema_on_resume is not None:
            self._ema_on_resume.load_module("ema", self.practice.ema.averaged)
        t = self.cfg.train
        cbs = [*self.practice.callbacks, Checkpointer(self.save, t.checkpoint_every,
                                                      t.checkpoint_steps)]  # fmt: skip
        if self.dist.is_main:
            cbs.append(HistoryWriter(self.rd.file(RunDir.HISTORY)))
            if t.progress:
                cbs.append(ProgressBar(t.epochs, stream, prefix, live))
        return cbs

    def _factor_state(self) -> dict[str, Any]:
        factor = getattr(self.setup.scheduler, "factor", None)
        return {"schedule_factor": factor.state_dict()} if hasattr(factor, "state_dict") else {}

    def _save_best(self, state: dict[str, torch.Tensor]) -> None:
        save_weights(self.rd.file(RunDir.BEST), state)

    def train_model(self) -> nn.Module:
        s = self.setup
        model = s.model
        if self.dist.enabled:
            if self.cfg.train.sync_bn:
                model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            ids = [s.runtime.device.index] if s.runtime.device.type == "cuda" else None
            model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        return torch.compile(model) if s.runtime.compile else model

    def _eval(self, model: nn.Module, loader, keep: bool = False) -> EvalResult:
        return evaluate(model, loader, num_classes=self.setup.data.num_classes,
                        autocast=self.setup.runtime.autocast, keep_outputs=keep)  # fmt: skip

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
        """Predictions, examples and metrics.json (rank 0); every rank returns the metrics.

        The reported weights are early stopping's best when it restored them, else the weight
        average when EMA is on, else the last step's; ``metrics["weights"]`` names their file
        and ``cnnlab.load`` reads exactly that one."""
        s, practice = self.setup, self.practice
        restored = practice is not None and practice.restore_best(self.cfg)
        final_model = practice.final_model(s.model) if practice is not None else s.model
        weights = RunDir.CHECKPOINT
        if restored:
            self.last_test = None  # the best epoch's weights are back: evaluate them afresh
            weights = RunDir.BEST
        elif final_model is not s.model:
            weights = RunDir.EMA
            if self.dist.is_main:
                save_weights(self.rd.file(RunDir.EMA), final_model.state_dict())
        metrics = None
        if self.dist.is_main:
            final = self.last_test or self._eval(final_model, s.data.test, keep=True)
            save_predictions(self.rd.file(RunDir.PREDICTIONS), final)
            save_examples(self.rd.file(RunDir.EXAMPLES), s.data.dataset.test_images,
                          final.targets, final.probs)  # fmt: skip
            metrics = final_metrics(s, state, final)
            metrics["processes"] = self.dist.world_size
            metrics["weights"] = weights
            if restored:
                metrics["best_epoch"] = state.best_epoch
            self.rd.write_json(RunDir.METRICS, metrics)
        return broadcast_object(metrics, self.dist)


def save_weights(path: Path, state: dict[str, torch.Tensor]) -> None:
    """A plain safetensors state dict, written atomically."""
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    atomic_write_bytes(path, save(tensors))


def data_meta(setup: TrainingSetup) -> dict[str, Any]:
    """The checkpoint's ``data`` entry (``cnnlab.trained.spec.DataSpec`` reads it back)."""
    cfg, data = setup.cfg, setup.data
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


def final_metrics(setup: TrainingSetup, state: TrainState, test: EvalResult) -> dict[str, Any]:
    """The run's headline numbers (``metrics.json``; ``--json`` prints them)."""
    cfg, data, runtime = setup.cfg, setup.data, setup.runtime
    info = summary(setup.model, (data.in_chans, data.image_size, data.image_size))
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
