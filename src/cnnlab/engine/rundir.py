"""The run directory: one folder per training run, written so that nothing is half-written.

Its layout is defined here and nowhere else (docs/architecture.md, "The run directory"):

- ``config.yaml``: the resolved config; ``env.json``: machine, versions, runtime;
- ``history.csv``: one row per epoch; ``metrics.json``: the final numbers (its presence makes
  the run finished; its ``weights`` key names the file holding the weights it reports);
- ``checkpoint.safetensors``: the last epoch's weights, optimiser, scheduler, RNG and metadata;
- ``best.safetensors``: early stopping's best weights; ``ema.safetensors``: the averaged weights;
- ``snapshot_<k>.safetensors``: snapshot-ensemble members; ``predictions.safetensors`` and
  ``examples.safetensors``: the final model's test outputs; ``train_eval.json``: the final model
  on the training set (``cnnlab compare``); ``figures/``, ``tensorboard/``, ``report.html``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cnnlab.engine.atomic import atomic_write_text


class RunDirError(ValueError):
    """A run directory that cannot be used as asked (exists, missing, not a run)."""


class RunDir:
    CONFIG = "config.yaml"
    ENV = "env.json"
    HISTORY = "history.csv"
    METRICS = "metrics.json"
    CHECKPOINT = "checkpoint.safetensors"
    BEST = "best.safetensors"  # early stopping's best weights (a plain safetensors state dict)
    EMA = "ema.safetensors"  # the exponential moving average of the weights, when on
    PREDICTIONS = "predictions.safetensors"
    EXAMPLES = "examples.safetensors"
    TRAIN_EVAL = "train_eval.json"  # the final model on the training set (cnnlab compare)
    TENSORBOARD = "tensorboard"
    FIGURES = "figures"
    REPORT = "report.html"
    SNAPSHOT = "snapshot_{k}.safetensors"  # snapshot ensembles (handbook §13.1.3)

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def checkpoint(self) -> Path:
        return self.path / self.CHECKPOINT

    @property
    def figures(self) -> Path:
        return self.path / self.FIGURES

    def is_finished(self) -> bool:
        return (self.path / self.METRICS).is_file()

    def reported_weights(
        self, metrics: Mapping[str, Any] | None, early_stopping: Mapping[str, Any] | None = None
    ) -> Path:
        """The file holding the weights ``metrics.json`` reports (``cnnlab.load``'s rule).

        A finished run names it (``metrics["weights"]``); one finished by an older cnnlab has
        early stopping's best weights when its config (``early_stopping``: the
        ``train.early_stopping`` section) restored them, else the checkpoint's; so does an
        unfinished run (``metrics`` None)."""
        if metrics is None:
            return self.checkpoint
        named = metrics.get("weights")
        if named is not None:
            target = self.file(str(named))
            if Path(str(named)).name != str(named) or not target.is_file():
                raise RunDirError(
                    f"{self.file(self.METRICS)}: reports the weights of {named!r}, but {target} "
                    "is not there"
                )
            return target
        es = early_stopping or {}
        best = self.file(self.BEST)
        if es.get("enabled") and es.get("restore_best", True) and best.is_file():
            return best
        return self.checkpoint

    def check(self, *, resume: bool = False) -> None:
        """Refuse to reuse a directory that holds a run unless resuming (writes nothing)."""
        if resume:
            if not self.checkpoint.is_file():
                raise RunDirError(f"--resume: no checkpoint in {self.path} (nothing to resume)")
            return
        if self.path.exists() and any(
            (self.path / f).exists() for f in (self.CHECKPOINT, self.METRICS, self.HISTORY)
        ):
            raise RunDirError(
                f"{self.path} already holds a run; pass --resume to continue it or choose "
                "another --out directory (nothing was overwritten)"
            )

    def create(self, *, resume: bool = False) -> RunDir:
        """Check, then make the directory; on resume, remove the temporary files a killed
        process may have left behind (the files they were meant to replace are intact)."""
        self.check(resume=resume)
        self.path.mkdir(parents=True, exist_ok=True)
        if resume:
            for stale in self.path.glob(".*.tmp"):
                stale.unlink(missing_ok=True)
        return self

    def write_text(self, name: str, text: str) -> Path:
        path = self.file(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text)
        return path

    def write_json(self, name: str, data: Any) -> Path:
        return self.write_text(name, json.dumps(clean_json(data), indent=2) + "\n")

    def read_json(self, name: str) -> Any:
        path = self.file(name)
        if not path.is_file():
            raise RunDirError(f"{path}: not found (is {self.path} a cnnlab run directory?)")
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise RunDirError(f"{path}: not valid JSON ({err})") from None


def clean_json(obj: Any) -> Any:
    """Replace NaN/inf (not valid JSON) by None, recursively."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: clean_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean_json(v) for v in obj]
    return obj
