"""The compressed-model file: safetensors tensors + JSON metadata, no pickle (Handbook §4).

One ``.safetensors`` file per compressed model. The tensors are the state dict, each entry in
its method's encoding (:mod:`cnnlab.compression.encoding`; int8 entries as integers + scales,
:mod:`cnnlab.compression.int8`). The JSON header holds the format tag, the registered model
``spec`` and the architecture ``patches`` (:mod:`cnnlab.compression.arch`) to rebuild the
structure, each tensor's encoding, the data description (normalisation) needed to evaluate it,
and a SHA-256 digest of the tensor bytes. ``load_compressed`` never executes stored code.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.compression import arch
from cnnlab.compression.binary_layers import BINARY_LAYERS
from cnnlab.compression.encoding import StorageError, decode, encode
from cnnlab.compression.int8 import decode_value, encode_value, quantize_int8
from cnnlab.engine.checkpoint import _read_header_metadata, atomic_write_bytes, tensor_digest
from cnnlab.models.spec import build_model

FORMAT = "cnnlab-compressed/1"


def _binary_keys(model: nn.Module) -> set[str]:
    return {f"{n}.weight" for n, m in model.named_modules()
            if isinstance(m, BINARY_LAYERS) and m.frozen}  # fmt: skip


def _float_payload(model: nn.Module, encodings: dict[str, dict]) -> tuple[dict, dict]:
    tensors: dict[str, torch.Tensor] = {}
    metas: dict[str, Any] = {}
    binary = _binary_keys(model)
    for key, value in model.state_dict().items():
        enc = {"kind": "binary"} if key in binary else encodings.get(key)
        t, meta = encode(key, value, enc)
        tensors.update(t)
        metas[key] = meta
    return tensors, metas


def _int8_payload(model: nn.Module) -> tuple[dict, dict]:
    tensors: dict[str, torch.Tensor] = {}
    metas: dict[str, Any] = {}
    for key, value in model.state_dict().items():
        t, meta = encode_value(key, value)
        tensors.update(t)
        metas[key] = meta
    return tensors, metas


def save_compressed(
    path: str | Path,
    model: nn.Module,
    *,
    spec: dict[str, Any],
    encodings: dict[str, dict] | None = None,
    int8: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> int:
    """Write ``model`` (a finalized compressed model) to ``path``; return the file size."""
    from safetensors.torch import save

    structure = int8["float_model"] if int8 is not None else model
    patches = arch.architecture_patches(build_model(spec), structure)
    if int8 is not None:
        tensors, metas = _int8_payload(model)
    else:
        tensors, metas = _float_payload(model, encodings or {})
    meta = {
        "format": FORMAT, "model": spec, "patches": patches, "tensors": metas,
        "kind": "int8" if int8 is not None else "float", "data": data or {}, **(extra or {}),
    }  # fmt: skip
    if int8 is not None:
        meta["int8"] = {"backend": int8["backend"]}
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    meta["sha256"] = tensor_digest(tensors)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, save(tensors, metadata={"cnnlab_compressed": json.dumps(meta)}))
    return path.stat().st_size


def read_compressed(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The raw tensors and metadata of a compressed file (verified), with clear errors."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    path = Path(path)
    if not path.is_file():
        raise StorageError(f"{path}: compressed model not found")
    raw = path.read_bytes()
    try:
        tensors = load(raw)
        text = _read_header_metadata(raw).get("cnnlab_compressed")
        meta = json.loads(text) if text is not None else None
    except (SafetensorError, ValueError) as err:
        raise StorageError(f"{path}: not a readable safetensors file ({err})") from None
    if meta is None or meta.get("format") != FORMAT:
        raise StorageError(f"{path}: not a cnnlab compressed model (expected format {FORMAT})")
    if meta.get("sha256") != tensor_digest(tensors):
        raise StorageError(f"{path}: tensor data does not match its SHA-256 (file damaged)")
    return tensors, meta


def load_compressed(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a saved compressed model (eval mode, CPU) and return it with its metadata."""
    tensors, meta = read_compressed(path)
    model = arch.apply_patches(build_model(meta["model"]), meta["patches"])
    if meta["kind"] == "int8":
        spec = meta["model"]
        gen = torch.Generator().manual_seed(0)
        dummy = torch.randn(2, spec["in_chans"], spec["input_size"], spec["input_size"],
                            generator=gen)  # fmt: skip
        model = quantize_int8(model, [dummy], meta["int8"]["backend"])
        state = OrderedDict((k, decode_value(k, tensors, m)) for k, m in meta["tensors"].items())
        # Quantized modules read their layout version from the state dict's metadata.
        state._metadata = model.state_dict()._metadata  # type: ignore[attr-defined]
    else:
        state = {k: decode(k, tensors, m) for k, m in meta["tensors"].items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise StorageError(
            f"{path}: stored tensors do not fit the rebuilt model ({first})"
        ) from None
    return model.eval(), meta
