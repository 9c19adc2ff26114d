"""Test-set outputs of a run, kept so reports and ensembles need no re-evaluation."""

from __future__ import annotations

from pathlib import Path

import torch

from cnnlab.engine.checkpoint import atomic_write_bytes
from cnnlab.evaluation.evaluate import EvalResult


def save_predictions(path: str | Path, result: EvalResult) -> None:
    """Class probabilities (float16) and targets of every test image, as safetensors."""
    from safetensors.torch import save

    if result.probs is None or result.targets is None:
        raise ValueError("save_predictions: the evaluation kept no outputs (keep_outputs=True)")
    tensors = {
        "probs": result.probs.to(torch.float16).contiguous(),
        "targets": result.targets.to(torch.int64).contiguous(),
    }
    atomic_write_bytes(Path(path), save(tensors))


def load_predictions(path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """``(probs float32 (N, C), targets int64 (N,))`` saved by ``save_predictions``."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: predictions file not found")
    tensors = load_file(path)
    missing = {"probs", "targets"} - set(tensors)
    if missing:
        raise ValueError(f"{path}: missing {', '.join(sorted(missing))}")
    return tensors["probs"].float(), tensors["targets"]
