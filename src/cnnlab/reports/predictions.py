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


def pick_examples(
    targets: torch.Tensor, preds: torch.Tensor, k: int = 16
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of up to ``k`` correctly and ``k`` wrongly classified test images, taken round
    robin over the true classes so every class shows up (deterministic, in test-set order)."""

    def spread(mask: torch.Tensor) -> torch.Tensor:
        idx = mask.nonzero().flatten()
        if idx.numel() == 0:
            return idx
        cls = targets[idx]
        # rank of each candidate within its class, then order by (rank, class)
        order = torch.argsort(cls, stable=True)
        counts = torch.bincount(cls)
        starts = torch.cumsum(counts, 0) - counts
        rank = torch.empty_like(order)
        rank[order] = torch.arange(order.numel()) - starts[cls[order]]
        key = rank * (int(cls.max()) + 1) + cls
        return idx[torch.argsort(key, stable=True)][:k]

    right = preds == targets
    return spread(right), spread(~right)


def save_examples(
    path: str | Path, images: torch.Tensor, targets: torch.Tensor, probs: torch.Tensor, k: int = 16
) -> None:
    """Store a few correct and wrong test images (uint8) with their labels for reports."""
    from safetensors.torch import save

    preds = probs.argmax(dim=1)
    good, bad = pick_examples(targets, preds, k)
    idx = torch.cat([good, bad])
    tensors = {
        "images": images[idx].contiguous(),
        "index": idx.contiguous(),
        "targets": targets[idx].contiguous(),
        "preds": preds[idx].contiguous(),
        "confidence": probs[idx].max(dim=1).values.float().contiguous(),
        "correct": (preds[idx] == targets[idx]).to(torch.uint8).contiguous(),
    }
    atomic_write_bytes(Path(path), save(tensors))
