"""Small helpers shared by the trend experiments: data from settings, config trees, curves."""

from __future__ import annotations

import json
import math
from typing import Any

import torch
from torch import nn

from cnnlab.data.datasets import ImageDataset
from cnnlab.engine.callbacks import Callback
from cnnlab.engine.checkpoint import atomic_write_text
from cnnlab.engine.rundir import clean_json
from cnnlab.experiments.base import Context
from cnnlab.experiments.data import subset

# Scales of the deep-net trainings (a 20-layer CIFAR-style net on 14x14 Fashion-MNIST) that
# several claims share; each experiment gets a deep copy (``settings_for``).
DEEP_NET_SCALES: dict[str, dict[str, Any]] = {
    "smoke": {"seeds": 1, "epochs": 1, "model_params": {"width": 0.25}},
    "quick": {"seeds": 1, "epochs": 3, "per_class": 400, "test_per_class": 50,
              "image_size": 14, "model_params": {"width": 0.5}},
    "full": {"seeds": 3, "epochs": 4, "per_class": 800, "test_per_class": 100,
             "image_size": 14, "model_params": {"width": 0.5}},
}  # fmt: skip


def data_for(ctx: Context, seed: int, **overrides: Any) -> ImageDataset:
    """The settings' Fashion-MNIST subset (``per_class``, ``test_per_class``, ``image_size``)."""
    s = {**ctx.settings, **overrides}
    return subset(
        ctx,
        seed,
        per_class=s.get("per_class"),
        test_per_class=s.get("test_per_class"),
        image_size=s.get("image_size"),
        label_noise=s.get("label_noise", 0.0),
    )


def tree(ctx: Context, model: str | None = None, **sections: Any) -> dict[str, Any]:
    """A config tree with the settings' epochs and batch size, plus ``sections``."""
    s = ctx.settings
    out: dict[str, Any] = {
        "train": {"epochs": int(s.get("epochs", 1))},
        "data": {"batch_size": int(s.get("batch_size", 64))},
    }
    if model is not None:
        out["model"] = {"name": model, "params": dict(s.get("model_params", {}))}
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def write_metrics(ctx: Context, arm: str, seed: int, metrics: dict[str, Any]) -> None:
    """metrics.json of a trial that is not a cnnlab training (toy problems)."""
    rd = ctx.run_dir(arm, seed)
    rd.mkdir(parents=True, exist_ok=True)
    atomic_write_text(rd / "metrics.json", json.dumps(clean_json(metrics), indent=2) + "\n")


def first_below(curve: dict[str, list[float]], target: float, cap: float) -> float:
    """The first x at which y <= target (linearly interpolated), or ``cap`` if never."""
    xs, ys = curve["x"], curve["y"]
    for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
        if y <= target:
            if i == 0:
                return x
            x0, y0 = xs[i - 1], ys[i - 1]
            return x0 + (x - x0) * (y0 - target) / max(y0 - y, 1e-12)
    return cap


def steps_per_epoch(n: int, batch: int) -> int:
    return max(1, math.ceil(n / batch))


class StopAfter(Callback):
    """Stop training after ``steps`` optimiser steps (for studies of the first batches)."""

    def __init__(self, steps: int) -> None:
        self.steps = steps

    def on_step_end(self, trainer: Any, state: Any) -> None:
        if state.step >= self.steps:
            state.should_stop = True
            state.stop_reason = f"stopped after {self.steps} steps (experiment)"


@torch.no_grad()
def features_and_labels(model: nn.Module, loader) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, D) deep features (``forward(x, return_features=True)``) and labels of a loader."""
    model.eval()
    feats, labels = [], []
    for x, y in loader:
        feats.append(model(x, return_features=True)[1].float())
        labels.append(y)
    return torch.cat(feats), torch.cat(labels)


def weight_tensors(model: nn.Module) -> list[torch.Tensor]:
    """Conv and linear weights (what the regularisers act on)."""
    return [m.weight.detach() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
