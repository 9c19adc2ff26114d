"""Loading trained members and running them over data: the plumbing the ensemble tools share."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnlab.data.bundle import build_data
from cnnlab.data.loader import BatchLoader
from cnnlab.engine.checkpoint import load_weights  # noqa: F401  (re-exported)
from cnnlab.engine.runtime import resolve_runtime
from cnnlab.trained.run import load


def load_run_member(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """A run's model in eval mode (on the CPU) and its checkpoint metadata, through
    ``cnnlab.load``: the weights the run's metrics.json reports."""
    run = load(path, device="cpu")
    return run.fresh_model(), run.meta


def eval_runtime(cfg: Any, model: nn.Module):
    """The runtime a member trained with (its device; channels_last for conv nets, 1.5x faster
    cnn2 inference on an AVX2 CPU), leaving the caller's thread count alone."""
    from dataclasses import replace

    return resolve_runtime(replace(cfg.train, threads=None), model)


def build_eval_data(cfg: Any, *, device: str | torch.device = "cpu", channels_last: bool = False):
    """The validation/test loaders of a run config (same rows, same order, as in training);
    ``channels_last`` batches for a model prepared in that memory format."""
    return build_data(cfg.data, seed=cfg.seed, device=torch.device(device),
                      channels_last=channels_last)  # fmt: skip


def plain_train_loader(data: Any, batch_size: int | None = None):
    """The training split without augmentation or shuffling (for extracting features), with
    the same normalisation and fitted preprocessing as the evaluation loaders."""
    train, test = data.train, data.test
    return BatchLoader(
        train.images, train.labels, batch_size=batch_size or test.batch_size,
        normalizer=data.normalizer, device=train.device, transform=test.transform,
    )  # fmt: skip


@torch.no_grad()
def collect_log_probs(
    model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """``log_softmax`` of the model's outputs over a loader (N, C), the targets (N,) and the
    seconds the forward passes took (the inference cost)."""
    was = model.training
    model.eval()
    outs, ys, seconds = [], [], 0.0
    for x, y in batches:
        start = time.perf_counter()
        out = model(x)
        out = out[0] if isinstance(out, (tuple, list)) else out
        logp = F.log_softmax(out.float(), dim=1)
        seconds += time.perf_counter() - start
        outs.append(logp.cpu())
        ys.append(y.cpu())
    model.train(was)
    if not ys:
        raise ValueError("collect_log_probs: the loader yielded no batches")
    return torch.cat(outs), torch.cat(ys), seconds
