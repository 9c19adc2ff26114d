"""What compression steps may use besides the model: data, training recipes, a log.

``CompressContext`` holds the run's data bundle (built once, with the run's own split and
normalisation), the run's training config (distillation trains students with it) and a
fine-tuning config derived from it (a smaller learning rate by default, Handbook §11.2.5:
fine-tune at about a tenth of the original rate or lower). All training goes through
``cnnlab.training.spine.train_model``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.compression.constraints import constrained
from cnnlab.compression.measure import accuracy
from cnnlab.compression.state import CompressState
from cnnlab.config import ConfigError, build_config
from cnnlab.data.bundle import build_data
from cnnlab.data.loader import BatchLoader
from cnnlab.engine.resume import ResumePoint
from cnnlab.engine.runtime import resolve_runtime
from cnnlab.training.spine import train_model

Log = Callable[[str], None]

#: Options of the ``finetune:`` section of a compression config.
FINETUNE_KEYS = ("lr", "lr_scale", "optimizer", "weight_decay", "schedule", "batch_size")


def finetune_config(cfg: Any, options: Mapping[str, Any] | None = None) -> Any:
    """The run's config with the fine-tuning optimiser/schedule (defaults: lr x 0.1,
    the run's optimiser and weight decay, a constant schedule). Every other practice of the
    run (max-norm, EMA, early stopping, per-stage learning rates, ...) applies to the
    fine-tuning too; options other than ``FINETUNE_KEYS`` are refused by name."""
    opts = dict(options or {})
    unknown = sorted(set(opts) - set(FINETUNE_KEYS))
    if unknown:
        raise ConfigError(
            f"finetune: unknown option(s) {', '.join(unknown)}; valid: {', '.join(FINETUNE_KEYS)}"
        )
    tree = cfg.to_dict()
    scale = opts.get("lr_scale", 0.1)
    tree["optim"]["lr"] = opts["lr"] if opts.get("lr") is not None else tree["optim"]["lr"] * scale
    if opts.get("optimizer") is not None:
        tree["optim"].update(name=opts["optimizer"], params={})
    if opts.get("weight_decay") is not None:
        tree["optim"]["weight_decay"] = opts["weight_decay"]
    tree["schedule"] = {"name": opts.get("schedule", "constant")}
    if opts.get("batch_size") is not None:
        tree["data"]["batch_size"] = opts["batch_size"]
    return build_config(plain_training(tree))


def plain_training(tree: dict[str, Any]) -> dict[str, Any]:
    """The run's own recipe for an in-memory training: no progress bar, and no pretrained
    checkpoint (the step's model brings its weights). Every other key applies, early stopping
    included (``cnnlab.training.spine.train_in_memory``)."""
    tree["train"]["progress"] = False
    tree["finetune"]["checkpoint"] = None
    return tree


@dataclass
class CompressContext:
    train_cfg: Any  # RunConfig of the run (students train with it)
    finetune_cfg: Any  # RunConfig for fine-tuning after a compression step
    data: Any  # DataBundle
    log: Log = print
    # Per-epoch resume files of the trainings (None: no resume files), keyed by step and call.
    resume_dir: Path | None = None
    _where: dict[str, Any] = field(default_factory=lambda: {"step": 0, "call": 0, "key": {}})

    def begin_step(self, index: int, key: Mapping[str, Any]) -> None:
        """Training calls from now on belong to step ``index``; ``key`` (e.g. the config up to
        this step) must match for a saved training to be continued."""
        self._where = {"step": index, "call": 0, "key": dict(key)}

    @classmethod
    def from_config(
        cls, cfg: Any, finetune: Mapping[str, Any] | None = None, log: Log = print
    ) -> CompressContext:
        """Build the data of ``cfg`` once and derive the fine-tuning config."""
        train_cfg = build_config(plain_training(cfg.to_dict()))
        runtime = resolve_runtime(train_cfg.train)
        data = build_data(train_cfg.data, seed=train_cfg.seed, device=runtime.device,
                          channels_last=False)  # fmt: skip
        return cls(train_cfg, finetune_config(train_cfg, finetune), data, log)

    @property
    def input_size(self) -> tuple[int, int, int]:
        return (self.data.in_chans, self.data.image_size, self.data.image_size)

    @property
    def num_classes(self) -> int:
        return self.data.num_classes

    def finetune(
        self, state: CompressState, epochs: int, *, task: Any = None, callbacks: Sequence = (),
        recipe: str = "finetune",
    ) -> list[dict[str, float]]:  # fmt: skip
        """Fine-tune ``state.model`` in place under its encodings' constraints, with the
        fine-tuning recipe (or the run's own with ``recipe="train"``)."""
        if epochs <= 0:
            return []
        state.require_float("finetune")
        cfg = self.train_cfg if recipe == "train" else self.finetune_cfg
        with constrained(state.model, state.encodings) as extra:
            history, _ = self._train(state.model, cfg, epochs, task, [*extra, *callbacks], recipe)
        state.model.cpu().to(memory_format=torch.contiguous_format)
        return history

    def train(self, model: nn.Module, epochs: int, task: Any = None) -> list[dict[str, float]]:
        """Train ``model`` (e.g. a distillation student) with the run's own recipe."""
        history, _ = self._train(model, self.train_cfg, epochs, task, [], "train")
        return history

    def _train(self, model, cfg, epochs, task, callbacks, what: str):
        """``cnnlab.training.spine.train_model`` on the run's data; its epoch lines (logged as each
        epoch ends: a distillation trains for hours) indented under the step's own line."""

        def log(line: str) -> None:
            self.log(f"  {what} {line}")

        resume = self._resume_point(what, epochs)
        return train_model(model, cfg, data=self.data, task=task, epochs=epochs, log=log,
                           callbacks=callbacks, resume=resume)  # fmt: skip

    def _resume_point(self, what: str, epochs: int):
        """The next training call's resume file: step k's j-th training is ``stepKK-J``; the
        fingerprint holds the step's key, the call number, the recipe and the epochs."""
        where = self._where
        where["call"] += 1
        if self.resume_dir is None:
            return None
        name = f"step{where['step']:02d}-{where['call']}.safetensors"
        fingerprint = {**where["key"], "step": where["step"], "call": where["call"],
                       "recipe": what, "epochs": epochs}  # fmt: skip
        return ResumePoint(Path(self.resume_dir) / name, fingerprint)

    def sample_batches(self, n_batches: int, batch_size: int = 64) -> list[tuple]:
        """``n_batches`` fixed batches of training images, without augmentation (calibration,
        APoZ and Taylor statistics), normalised like the run's evaluation data."""
        train = self.data.train
        gen = torch.Generator().manual_seed(self.train_cfg.seed)
        n = min(train.images.shape[0], n_batches * batch_size)
        idx = torch.randperm(train.images.shape[0], generator=gen)[:n].to(train.images.device)
        loader = BatchLoader(
            train.images[idx], train.labels[idx], batch_size=batch_size,
            normalizer=self.data.normalizer, transform=self.data.test.transform,
        )  # fmt: skip
        return [(x.cpu(), y.cpu()) for x, y in loader]

    def accuracy(self, model: nn.Module) -> float:
        batches = ((x.cpu(), y.cpu()) for x, y in self.data.test)
        return accuracy(model, batches, self.num_classes)
