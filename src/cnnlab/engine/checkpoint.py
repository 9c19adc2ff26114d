"""Checkpoints: one safetensors file holding tensors plus JSON metadata, written atomically.

Everything needed to resume exactly lives in one file, so one ``os.replace`` publishes it: the
model and optimiser tensors and the RNG state as safetensors tensors; the run metadata (model
name and options, epoch/step, optimiser hyper-parameters, scheduler state, history, config) as
JSON in the safetensors header. Loading never executes code (no pickle), and a SHA-256 digest
of the tensor bytes, stored in the header, turns any tampering or truncation into a clear error.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from cnnlab.engine.atomic import atomic_write_bytes, atomic_write_text  # noqa: F401
from cnnlab.engine.state import TrainState

FORMAT = "cnnlab-checkpoint/1"


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model; names file and problem."""


def tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key]
        h.update(key.encode())
        h.update(str(t.dtype).encode() + str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def save_checkpoint(
    path: str | Path,
    *,
    model: nn.Module,
    meta: dict[str, Any],
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    rng: bool = True,
    rng_states: list[torch.Tensor] | None = None,
    modules: dict[str, nn.Module] | None = None,
    tensors: dict[str, torch.Tensor] | None = None,
) -> None:
    """Write model (+ optimiser, scheduler, RNG) state and ``meta`` to ``path`` atomically.

    ``rng_states`` holds one CPU RNG state per distributed rank (default: this process's);
    if it has a ``cuda`` list (``distributed.RngStates``), each rank's CUDA state is saved too
    (``rng.cuda_rank.R``), else a single process saves its CUDA devices' (``rng.cuda.I``) once
    CUDA is in use;
    ``modules`` are other stateful parts (the task: center-loss centres, mixup's step) saved
    under their name; ``tensors`` are saved as they are (the fitted preprocessing).
    """
    from safetensors.torch import save

    extra = tensors or {}
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update(extra)
    for name, module in (modules or {}).items():
        tensors.update({f"{name}.{k}": v for k, v in module.state_dict().items()})
    meta = dict(meta, format=FORMAT)
    if optimizer is not None:
        opt_tensors, meta["optimizer"] = _split_optimizer_state(optimizer.state_dict())
        tensors.update(opt_tensors)
    if scheduler is not None:
        meta["scheduler"] = scheduler.state_dict()
    if rng:
        cpu_states = rng_states or [torch.get_rng_state()]
        for r, state in enumerate(cpu_states):
            tensors[f"rng.torch.{r}"] = state
        per_rank = getattr(rng_states, "cuda", None)
        if per_rank:
            for r, state in enumerate(per_rank):
                tensors[f"rng.cuda_rank.{r}"] = state
        elif len(cpu_states) == 1 and torch.cuda.is_available() and torch.cuda.is_initialized():
            for i, state in enumerate(torch.cuda.get_rng_state_all()):
                tensors[f"rng.cuda.{i}"] = state
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    meta["sha256"] = tensor_digest(tensors)
    header = {"cnnlab": json.dumps(meta, default=_json_default)}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(Path(path), save(tensors, metadata=header))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor) and obj.numel() == 1:
        return obj.item()
    if isinstance(obj, (tuple, set)):
        return list(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in checkpoint metadata")


def _split_optimizer_state(sd: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors, scalars = {}, {}
    for pid, state in sd["state"].items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{pid}.{key}"] = value
            else:
                scalars[f"{pid}.{key}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


class Checkpoint:
    """A loaded checkpoint: ``tensors`` (name -> tensor) and ``meta`` (the JSON header)."""

    def __init__(self, path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]):
        self.path, self.tensors, self.meta = path, tensors, meta

    def model_state(self) -> dict[str, torch.Tensor]:
        return {k[6:]: v for k, v in self.tensors.items() if k.startswith("model.")}

    def load_model(self, model: nn.Module) -> None:
        """Copy the weights into ``model``; mismatched keys or shapes name the tensors."""
        state = self.model_state()
        own = model.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        shapes = [
            f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
            for k in sorted(set(own) & set(state))
            if state[k].shape != own[k].shape
        ]
        if missing or unexpected or shapes:
            arch = self.meta.get("model", {}).get("name", "?")
            parts = [f"{self.path}: checkpoint (model {arch!r}) does not fit this model"]
            if missing:
                parts.append(f"missing {len(missing)} tensors, e.g. {', '.join(missing[:3])}")
            if unexpected:
                parts.append(f"unexpected {len(unexpected)}, e.g. {', '.join(unexpected[:3])}")
            if shapes:
                parts.append("shape mismatch: " + "; ".join(shapes[:3]))
            raise CheckpointError("; ".join(parts))
        model.load_state_dict(state)

    def load_module(self, name: str, module: nn.Module) -> None:
        """Restore a module saved with ``modules={name: ...}`` (nothing saved: nothing to do)."""
        prefix = f"{name}."
        state = {k[len(prefix) :]: v for k, v in self.tensors.items() if k.startswith(prefix)}
        if state or module.state_dict():
            try:
                module.load_state_dict(state)
            except RuntimeError as err:
                raise CheckpointError(
                    f"{self.path}: saved {name} state does not fit: {err}"
                ) from None

    def load_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        info = self.meta.get("optimizer")
        if info is None:
            raise CheckpointError(f"{self.path}: holds no optimizer state (cannot resume)")
        state: dict[int, dict[str, Any]] = {}
        for key, value in self.tensors.items():
            if key.startswith("optim."):
                _, pid, name = key.split(".", 2)
                state.setdefault(int(pid), {})[name] = value
        for key, value in info["scalars"].items():
            pid, name = key.split(".", 1)
            state.setdefault(int(pid), {})[name] = value
        groups = [
            {k: tuple(v) if isinstance(live.get(k), tuple) else v for k, v in saved.items()}
            for saved, live in zip(info["param_groups"], optimizer.param_groups, strict=False)
        ]  # JSON has no tuples (Adam's betas); restore the types the optimiser uses
        optimizer.load_state_dict({"state": state, "param_groups": groups})

    def restore_training(
        self, model: nn.Module, task: nn.Module, optimizer: torch.optim.Optimizer,
        scheduler: Any, rank: int = 0,
    ) -> Any:  # fmt: skip
        """Load model, task, optimiser, scheduler and RNG state; the saved ``TrainState``."""
        if "state" not in self.meta:
            raise CheckpointError(f"{self.path}: holds no training state (cannot resume)")
        self.load_model(model)
        self.load_module("task", task)
        self.load_optimizer(optimizer)
        if "scheduler" in self.meta:
            scheduler.load_state_dict(self.meta["scheduler"])
        self.restore_rng(rank)
        return TrainState.from_dict(self.meta["state"])

    def restore_rng(self, rank: int = 0) -> None:
        """This rank's CPU RNG state and, on a machine with CUDA, its CUDA state: the one saved
        for this rank (into the current device, LOCAL_RANK's under DDP), else each device's."""
        key = f"rng.torch.{rank}"
        if key in self.tensors:
            torch.set_rng_state(self.tensors[key])
        if not torch.cuda.is_available():
            return
        per_rank = self.tensors.get(f"rng.cuda_rank.{rank}")
        if per_rank is not None:
            torch.cuda.set_rng_state(per_rank)
            return
        devices = {int(k.rsplit(".", 1)[1]): v for k, v in self.tensors.items()
                   if k.startswith("rng.cuda.")}  # fmt: skip
        for i in sorted(devices):
            if i < torch.cuda.device_count():
                torch.cuda.set_rng_state(devices[i], device=i)


def load_checkpoint(path: str | Path, *, verify: bool = True) -> Checkpoint:
    """Read a checkpoint safely (safetensors + JSON, no code execution) and verify it."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.safetensors"
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    raw = path.read_bytes()
    try:
        tensors = load(raw)
        meta_text = _read_header_metadata(raw).get("cnnlab")
    except (SafetensorError, ValueError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: not a readable safetensors checkpoint ({err})") from None
    if meta_text is None:
        raise CheckpointError(f"{path}: safetensors file without cnnlab metadata")
    try:
        meta = json.loads(meta_text)
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: corrupt metadata ({err})") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: unknown format {meta.get('format')!r}, expected {FORMAT}")
    if verify and meta.get("sha256") != tensor_digest(tensors):
        raise CheckpointError(
            f"{path}: tensor data does not match its recorded SHA-256 (file modified or damaged)"
        )
    return Checkpoint(path, tensors, meta)


def _read_header_metadata(raw: bytes) -> dict[str, str]:
    if len(raw) < 8:
        raise ValueError("file shorter than a safetensors header")
    n = int.from_bytes(raw[:8], "little")
    if n > len(raw) - 8:
        raise ValueError("header length exceeds file size (truncated file)")
    header = json.loads(raw[8 : 8 + n])
    return header.get("__metadata__", {}) or {}


def load_weights(
    model: nn.Module, path: str | Path, *, checkpoint: Checkpoint | None = None
) -> None:
    """Load weights into ``model`` from a cnnlab checkpoint or a plain safetensors state dict
    (early stopping's best, averaged or snapshot weights); a mismatch names file and tensors.
    ``checkpoint`` is the already-loaded checkpoint, used when ``path`` is its file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if checkpoint is not None and path == checkpoint.path:
        checkpoint.load_model(model)
        return
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{path}: cannot read weights ({err})") from None
    Checkpoint(path, {f"model.{k}": v for k, v in state.items()}, {}).load_model(model)
