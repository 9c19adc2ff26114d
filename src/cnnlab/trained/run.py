"""One loader for a trained run: ``cnnlab.load(path)`` -> ``TrainedRun``.

Every command that reads a run back (``eval``, ``export``, ``inspect``, ``report``, ensembles of
runs, compression, fine-tuning, the experiments, ``predict``) goes through :func:`load`, so they
all see the same network with the same weights, data description and runtime.

Which weights: the ones the run's ``metrics.json`` reports. A finished run names them in its
``weights`` key (``checkpoint.safetensors``, early stopping's ``best.safetensors`` when it
restored them, ``ema.safetensors`` when the run evaluated averaged weights). A run finished by
an older cnnlab has no such key: early stopping's best weights are used when the run's config
restored them and the file exists, else the checkpoint's. An unfinished run (no
``metrics.json``) or a bare checkpoint file gives the checkpoint's weights (the last epoch saved).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.config import ConfigError, RunConfig, TrainConfig, build_config
from cnnlab.data.datasets import ImageDataset, load_dataset
from cnnlab.data.loader import BatchLoader, Normalizer
from cnnlab.data.preprocess import Pipeline, restore_preprocess
from cnnlab.engine.checkpoint import Checkpoint, CheckpointError, load_checkpoint, load_weights
from cnnlab.engine.rundir import RunDir, RunDirError
from cnnlab.engine.runtime import Runtime, resolve_runtime
from cnnlab.models.spec import build_model
from cnnlab.trained.spec import DataSpec


@dataclass
class TrainedRun:
    """A trained run, rebuilt: the network (eval mode, on ``runtime.device``, in the run's
    memory layout) with the weights ``metrics.json`` reports, and what describes it."""

    path: Path  # the run directory (the checkpoint's folder)
    model: nn.Module
    spec: dict[str, Any]  # cnnlab.models.spec: name, params, num_classes, in_chans, input_size
    data: DataSpec
    runtime: Runtime  # device, precision and memory layout, as the run trained
    config: RunConfig
    metrics: dict[str, Any] | None  # metrics.json, None for an unfinished run
    weights: Path  # the file the weights came from
    checkpoint: Checkpoint
    transform: Pipeline  # preprocessing fitted on the training split (after normalisation)

    @property
    def classes(self) -> tuple[str, ...]:
        return self.data.classes

    @property
    def normalizer(self) -> Normalizer:
        return Normalizer(self.data.mean, self.data.std)

    @property
    def meta(self) -> dict[str, Any]:
        """The checkpoint's metadata (model, data, config, state)."""
        return self.checkpoint.meta

    def dataset(self, data_dir: str | Path | None = None, log: Any = None) -> ImageDataset:
        """The run's data set: from ``data_dir``, else where the run found it if it is still
        there, else the usual search (its notice, e.g. "embedded sample", goes to ``log``)."""
        where = data_dir
        if where is None and self.data.data_dir and Path(self.data.data_dir).is_dir():
            where = self.data.data_dir
        dataset = load_dataset(self.data.dataset, where, **dict(self.data.params))
        if log is not None and dataset.notice:
            log(f"note: {dataset.notice}")
        if log is not None and self.data.source and dataset.source != self.data.source:
            log(
                f"note: the run was trained with data from {self.data.source!r}; using "
                f"{dataset.source!r}"
            )
        return dataset

    def loader(
        self, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int = 1000
    ) -> BatchLoader:
        """Unaugmented batches of uint8 images as the network saw them in evaluation."""
        return BatchLoader(
            images, labels, batch_size=batch_size, normalizer=self.normalizer,
            device=self.runtime.device, channels_last=self.runtime.channels_last,
            transform=self.transform if len(self.transform) else None,
        )  # fmt: skip

    def fresh_model(self) -> nn.Module:
        """A new network with the run's weights, on the CPU in the default layout (for
        compression, ensembles, export: callers that change or move it)."""
        model = build_model(self.spec)
        load_weights(model, self.weights, checkpoint=self.checkpoint)
        return model.eval()

    def predict(self, x: Any, *, top_k: int = 5, tta: Any = None, batch_size: int = 256) -> Any:
        """Top-k labels and probabilities of images (paths, PIL images, arrays, tensors) as a
        ``cnnlab.trained.predict.Prediction``; the run's own preprocessing, device, precision."""
        from cnnlab.trained.predict import predict

        return predict(self, x, top_k=top_k, tta=tta, batch_size=batch_size)

    def preprocess(self, x: Any) -> torch.Tensor:
        """What the network sees for ``x``: float (N, C, H, W), normalised, on its device."""
        from cnnlab.trained.predict import preprocess

        return preprocess(self, x)


def load(
    path: str | Path, *, data_dir: str | None = None, device: str | torch.device | None = None
) -> TrainedRun:
    """Load a run directory or a ``checkpoint.safetensors`` file (see the module docstring
    for which weights). ``device`` overrides the run's (``train.device``, resolved here);
    ``data_dir`` is where the data set lies now, if not where the run found it."""
    path = Path(path)
    ckpt = load_checkpoint(path)
    meta = ckpt.meta
    if not isinstance(meta.get("model"), dict) or not isinstance(meta.get("data"), dict):
        missing = [k for k in ("model", "data") if not isinstance(meta.get(k), dict)]
        raise CheckpointError(
            f"{ckpt.path}: no {' or '.join(missing)} metadata (not a cnnlab training run?)"
        )
    try:
        data = DataSpec.from_meta(meta["data"], meta["model"])
    except KeyError as err:
        raise CheckpointError(f"{ckpt.path}: {err.args[0]}") from None
    rd = RunDir(ckpt.path.parent)
    metrics = rd.read_json(RunDir.METRICS) if rd.is_finished() else None
    config = run_config(ckpt, data_dir)
    try:
        weights = rd.reported_weights(metrics, dataclasses.asdict(config.train.early_stopping))
    except RunDirError as err:
        raise CheckpointError(str(err)) from None
    if weights == rd.checkpoint:
        weights = ckpt.path  # the file given may be a checkpoint under another name
    model = build_model(meta["model"])
    load_weights(model, weights, checkpoint=ckpt)
    runtime = run_runtime(config, metrics, model, device)
    model = runtime.prepare_model(model).eval()
    try:
        transform = restore_preprocess(config.data.preprocess, ckpt.tensors, prefix="preprocess.")
    except ValueError as err:  # a run of an older cnnlab did not save the fitted tensors
        raise CheckpointError(f"{ckpt.path}: {err}") from None
    return TrainedRun(
        path=rd.path, model=model, spec=dict(meta["model"]), data=data, runtime=runtime,
        config=config, metrics=metrics, weights=weights, checkpoint=ckpt, transform=transform,
    )  # fmt: skip


def run_config(ckpt: Checkpoint, data_dir: str | None = None) -> RunConfig:
    """The run's config, with ``data.data_dir`` replaced by ``data_dir`` (or cleared when the
    recorded folder is gone, so the usual search finds the data)."""
    tree = copy.deepcopy(ckpt.meta.get("config") or {})
    if not tree:
        raise CheckpointError(f"{ckpt.path}: holds no config (not a cnnlab training run?)")
    data = tree.setdefault("data", {})
    recorded = data.get("data_dir")
    if data_dir is not None or (recorded and not Path(recorded).is_dir()):
        data["data_dir"] = None if data_dir is None else str(data_dir)
    try:
        return build_config(tree)
    except ConfigError as err:
        raise CheckpointError(f"{ckpt.path}: its config no longer loads: {err}") from None


def run_runtime(
    cfg: RunConfig, metrics: dict[str, Any] | None, model: nn.Module,
    device: str | torch.device | None = None,
) -> Runtime:  # fmt: skip
    """The precision and memory layout the run trained with, on this machine's device.

    The precision is the one the run resolved (``metrics.json``; "auto" resolved afresh could
    pick bf16 for an fp32 run). fp16 needs CUDA: on a CPU such a run is evaluated in fp32. The
    caller's thread count is left alone."""
    precision = (metrics or {}).get("precision") or cfg.train.precision
    dev = str(device) if device is not None else cfg.train.device
    if dev == "auto":
        dev = "cuda" if torch.cuda.is_available() else "cpu"
    if precision == "fp16" and not dev.startswith("cuda"):
        precision = "fp32"
    train = TrainConfig(precision=precision, channels_last=cfg.train.channels_last, device=dev)
    return resolve_runtime(train, model)
