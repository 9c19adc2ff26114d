"""Snapshot ensembles from a run's snapshots (handbook §13.2.1; Huang et al., ICLR 2017).

Training saves them (``cnnlab.engine.snapshots.SnapshotSaver``, ``train.snapshots``); this module
finds and loads them: ``Ensemble.from_snapshots(run_dir, last=m)`` averages the last m.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch.nn as nn

from cnnlab.engine.checkpoint import load_checkpoint, load_weights
from cnnlab.engine.rundir import RunDir
from cnnlab.engine.snapshots import (
    HEADER_KEY,
    SNAPSHOT,
    SnapshotSaver,
    snapshot_callbacks,
    snapshot_steps,
)
from cnnlab.errors import EnsembleError
from cnnlab.models.spec import build_model

__all__ = [
    "HEADER_KEY",
    "SNAPSHOT",
    "SnapshotSaver",
    "list_snapshots",
    "load_snapshots",
    "snapshot_callbacks",
    "snapshot_info",
    "snapshot_steps",
]


def list_snapshots(run_dir: str | Path) -> list[tuple[int, Path]]:
    """``(k, path)`` of every ``snapshot_k.safetensors`` in ``run_dir``, by k."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise EnsembleError(f"{run_dir}: not a directory")
    found = [(int(m.group(1)), p) for p in run_dir.iterdir() if (m := SNAPSHOT.match(p.name))]
    return sorted(found)


def snapshot_info(path: str | Path) -> dict[str, Any]:
    """The JSON header a ``SnapshotSaver`` wrote (cycle, step, epoch, model spec)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    return json.loads(meta[HEADER_KEY]) if HEADER_KEY in meta else {}


def load_snapshots(
    run_dir: str | Path, *, last: int | None = None
) -> tuple[list[nn.Module], list[str], dict[str, Any]]:
    """Models of the last ``last`` snapshots of a run, their names and the run's metadata."""
    snaps = list_snapshots(run_dir)
    if not snaps:
        raise EnsembleError(
            f"{run_dir}: no snapshot_k.safetensors files; train with the cosine_restarts "
            "schedule and a SnapshotSaver callback (or `snapshots:` in `cnnlab ensemble`)"
        )
    if last is not None and not 1 <= last <= len(snaps):
        raise EnsembleError(f"{run_dir}: last={last}, but the run holds {len(snaps)} snapshots")
    snaps = snaps[-last:] if last else snaps
    meta: dict[str, Any] = {}
    if RunDir(run_dir).checkpoint.is_file():
        meta = dict(load_checkpoint(run_dir).meta)
    spec = snapshot_info(snaps[0][1]).get("model") or meta.get("model")
    if spec is None:
        raise EnsembleError(f"{run_dir}: no model description in the snapshots or a checkpoint")
    models = []
    for _, path in snaps:
        model = build_model(spec)
        load_weights(model, path)
        models.append(model.eval())
    out = {"model": spec, "data": meta.get("data"), "snapshots": [k for k, _ in snaps]}
    return models, [f"snapshot_{k}" for k, _ in snaps], out
