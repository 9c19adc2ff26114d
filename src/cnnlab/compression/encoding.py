"""Tensor encodings of the compressed storage format: what each method really writes to disk.

Every encoder derives its codes from the tensor's *values*, so a file can only be as small as
the model really is: a "codebook" tensor must hold at most 2**bits distinct values, a "binary"
one only -1/+1, and so on; otherwise saving fails with the tensor named.

- ``sparse``: 1-bit occupancy mask + the non-zero values (float32): n + 32 nnz bits.
- ``codebook`` (k-means weight sharing, Handbook §4.3): b-bit code per weight + the codebook
  (<= 2**b float32 values): n b + 32 k bits; with ``sparse`` only the non-zeros get codes and a
  mask marks them (Deep Compression's pruning + sharing): n + nnz b + 32 k bits.
- ``pq`` (product quantisation): per subspace of ``sub`` columns, a b-bit code per row and a
  codebook of k sub-vectors: 32 k n + m s b bits for an m x n matrix split into s subspaces.
- ``binary``: 1 bit per weight (the per-channel alpha is a separate float32 buffer).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from cnnlab.compression.packing import (
    bits_for,
    pack_bits,
    pack_mask,
    unpack_bits,
    unpack_mask,
)


class StorageError(ValueError):
    """A tensor that does not fit its declared encoding, or a damaged compressed file."""


Tensors = dict[str, torch.Tensor]


def _sep(key: str, part: str) -> str:
    return f"{key}::{part}"


def encode_sparse(key: str, t: torch.Tensor) -> tuple[Tensors, dict[str, Any]]:
    mask = t != 0
    tensors = {_sep(key, "mask"): pack_mask(mask), _sep(key, "values"): t[mask].float()}
    return tensors, {"kind": "sparse", "shape": list(t.shape)}


def decode_sparse(key: str, tensors: Tensors, meta: dict[str, Any]) -> torch.Tensor:
    shape = meta["shape"]
    mask = unpack_mask(tensors[_sep(key, "mask")], math.prod(shape))
    out = torch.zeros(math.prod(shape))
    out[mask] = tensors[_sep(key, "values")]
    return out.reshape(shape)


def encode_codebook(key: str, t: torch.Tensor, bits: int, sparse: bool) -> tuple[Tensors, dict]:
    flat = t.reshape(-1).float()
    mask = flat != 0 if sparse else None
    values = flat[mask] if mask is not None else flat
    codebook, codes = torch.unique(values, sorted=True, return_inverse=True)
    if codebook.numel() > 1 << bits:
        raise StorageError(
            f"{key}: {codebook.numel()} distinct values do not fit a {bits}-bit codebook "
            f"(<= {1 << bits}); was the layer changed after k-means?"
        )
    tensors = {_sep(key, "codebook"): codebook, _sep(key, "codes"): pack_bits(codes, bits)}
    if mask is not None:
        tensors[_sep(key, "mask")] = pack_mask(mask)
    meta = {"kind": "codebook", "shape": list(t.shape), "bits": bits, "sparse": sparse,
            "count": values.numel()}  # fmt: skip
    return tensors, meta


def decode_codebook(key: str, tensors: Tensors, meta: dict[str, Any]) -> torch.Tensor:
    shape, n = meta["shape"], math.prod(meta["shape"])
    codes = unpack_bits(tensors[_sep(key, "codes")], meta["bits"], meta["count"])
    values = tensors[_sep(key, "codebook")][codes]
    if not meta["sparse"]:
        return values.reshape(shape)
    mask = unpack_mask(tensors[_sep(key, "mask")], n)
    out = torch.zeros(n)
    out[mask] = values
    return out.reshape(shape)


def encode_pq(key: str, t: torch.Tensor, sub: int, k: int) -> tuple[Tensors, dict[str, Any]]:
    if t.dim() != 2 or t.shape[1] % sub:
        raise StorageError(f"{key}: product quantisation needs a matrix with columns divisible "
                           f"by {sub}, got shape {tuple(t.shape)}")  # fmt: skip
    m, n = t.shape
    s = n // sub
    bits = bits_for(k)
    parts = t.float().reshape(m, s, sub).transpose(0, 1)  # (m, n) -> (s, m, sub)
    books = torch.zeros(s, k, sub)
    codes = torch.empty(s, m, dtype=torch.int64)
    for j in range(s):
        uniq, inverse = torch.unique(parts[j], dim=0, return_inverse=True)
        if uniq.shape[0] > k:
            raise StorageError(f"{key}: subspace {j} holds {uniq.shape[0]} distinct sub-vectors "
                               f"(codebook size {k}); was the layer changed after PQ?")  # fmt: skip
        books[j, : uniq.shape[0]] = uniq
        codes[j] = inverse
    tensors = {_sep(key, "codebooks"): books, _sep(key, "codes"): pack_bits(codes, bits)}
    return tensors, {"kind": "pq", "shape": [m, n], "sub": sub, "k": k, "bits": bits}


def decode_pq(key: str, tensors: Tensors, meta: dict[str, Any]) -> torch.Tensor:
    m, n = meta["shape"]
    s = n // meta["sub"]
    codes = unpack_bits(tensors[_sep(key, "codes")], meta["bits"], s * m).reshape(s, m)
    books = tensors[_sep(key, "codebooks")]  # (s, k, sub)
    parts = books[torch.arange(s)[:, None], codes]  # (s, m, sub)
    return parts.transpose(0, 1).reshape(m, n)


def encode_binary(key: str, t: torch.Tensor) -> tuple[Tensors, dict[str, Any]]:
    if not bool(((t == 1) | (t == -1)).all()):
        raise StorageError(f"{key}: a binary weight must hold only -1 and +1")
    return {_sep(key, "bits"): pack_mask(t > 0)}, {"kind": "binary", "shape": list(t.shape)}


def decode_binary(key: str, tensors: Tensors, meta: dict[str, Any]) -> torch.Tensor:
    shape = meta["shape"]
    bits = unpack_mask(tensors[_sep(key, "bits")], math.prod(shape))
    return torch.where(bits, 1.0, -1.0).reshape(shape)


def encode(key: str, t: torch.Tensor, enc: dict[str, Any] | None) -> tuple[Tensors, dict]:
    """Encode one state-dict tensor as declared by ``enc`` (None: stored as it is)."""
    t = t.detach().cpu().contiguous()
    kind = None if enc is None else enc["kind"]
    if kind is None:
        return {key: t}, {"kind": "dense"}
    if kind == "sparse":
        return encode_sparse(key, t)
    if kind == "codebook":
        return encode_codebook(key, t, int(enc["bits"]), bool(enc.get("sparse", False)))
    if kind == "pq":
        return encode_pq(key, t, int(enc["sub"]), int(enc["k"]))
    if kind == "binary":
        return encode_binary(key, t)
    raise StorageError(f"{key}: unknown encoding {kind!r}")


DECODERS = {
    "sparse": decode_sparse,
    "codebook": decode_codebook,
    "pq": decode_pq,
    "binary": decode_binary,
}


def decode(key: str, tensors: Tensors, meta: dict[str, Any]) -> torch.Tensor:
    """Inverse of :func:`encode` for one state-dict entry."""
    kind = meta.get("kind")
    if kind == "dense":
        return tensors[key]
    if kind not in DECODERS:
        raise StorageError(f"{key}: unknown encoding {kind!r} in the file")
    try:
        return DECODERS[kind](key, tensors, meta)
    except (KeyError, ValueError, RuntimeError) as err:
        raise StorageError(f"{key}: damaged {kind} encoding ({err})") from None


def codebook_bits(n: int, k: int, nnz: int | None = None) -> int:
    """Storage bits of a k-entry codebook layer of n weights: n log2 k + 32 k (Part E item 18);
    with ``nnz`` (pruned layer), a 1-bit mask plus codes for the non-zeros only."""
    b = bits_for(k)
    return n * b + 32 * k if nnz is None else n + nnz * b + 32 * k


def pq_bits(m: int, n: int, sub: int, k: int) -> int:
    """Storage bits of PQ on an m x n matrix, s = n / sub subspaces: 32 k n + m s log2 k."""
    return 32 * k * n + m * (n // sub) * bits_for(k)
