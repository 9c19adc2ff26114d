"""Bit packing for compressed storage: b-bit codes and 1-bit masks in uint8 byte arrays.

The handbook's storage claims (§4.3: log2(k) bits per shared weight; §4.4: 1 bit per binary
weight) only hold on disk if the codes are packed densely. ``pack_bits`` writes each code as
``bits`` big-endian bits, one after the other, with ``numpy.packbits``; any width from 1 to 16
bits works, so k need not be a power of two for the code arrays to be dense.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def bits_for(k: int) -> int:
    """Bits needed to index ``k`` entries (at least 1): ceil(log2(k))."""
    if k < 1:
        raise ValueError(f"bits_for: need at least one entry, got k={k}")
    return max(1, math.ceil(math.log2(k)))


def _check_bits(bits: int) -> None:
    if not 1 <= bits <= 16:
        raise ValueError(f"bits must be between 1 and 16, got {bits}")


def pack_bits(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack non-negative integer ``codes`` (any shape, < 2**bits) into a flat uint8 tensor."""
    _check_bits(bits)
    flat = codes.detach().reshape(-1).to(torch.int64).cpu().numpy()
    if flat.size and (flat.min() < 0 or flat.max() >= 1 << bits):
        raise ValueError(f"pack_bits: codes must lie in [0, {1 << bits}), found {flat.max()}")
    shifts = np.arange(bits - 1, -1, -1, dtype=np.int64)
    matrix = ((flat[:, None] >> shifts) & 1).astype(np.uint8)  # (n, bits), most significant first
    return torch.from_numpy(np.packbits(matrix.reshape(-1)))


def unpack_bits(packed: torch.Tensor, bits: int, count: int) -> torch.Tensor:
    """Inverse of :func:`pack_bits`: the first ``count`` codes as an int64 tensor."""
    _check_bits(bits)
    need = math.ceil(count * bits / 8)
    if packed.numel() < need:
        raise ValueError(f"unpack_bits: {packed.numel()} bytes hold fewer than {count} codes")
    raw = np.unpackbits(packed.cpu().numpy())[: count * bits].reshape(count, bits)
    weights = (1 << np.arange(bits - 1, -1, -1, dtype=np.int64)).astype(np.int64)
    return torch.from_numpy(raw.astype(np.int64) @ weights)


def pack_mask(mask: torch.Tensor) -> torch.Tensor:
    """A boolean tensor as 1 bit per element (flat uint8, ceil(n / 8) bytes)."""
    return torch.from_numpy(np.packbits(mask.detach().reshape(-1).cpu().numpy().astype(np.uint8)))


def unpack_mask(packed: torch.Tensor, count: int) -> torch.Tensor:
    """The first ``count`` bits of a packed mask as a flat bool tensor."""
    if packed.numel() * 8 < count:
        raise ValueError(f"unpack_mask: {packed.numel()} bytes hold fewer than {count} bits")
    bits = np.unpackbits(packed.cpu().numpy())[:count]
    return torch.from_numpy(bits.astype(bool))
