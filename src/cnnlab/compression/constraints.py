"""Keeping a compressed model compressed while it is fine-tuned (Handbook §4.2-§4.4).

Every fine-tune step (after pruning, after quantisation, or a later ``finetune`` step) trains
the model *under the constraints its encodings declare*, then bakes the result back into
plain weights:

- ``sparse``: a fixed ``torch.nn.utils.prune`` mask (pruned weights stay zero; Han et al.);
- ``codebook``: weight = codebook[codes] (x mask), with the codebook the trainable parameter,
  so autograd sums the gradients of all weights of a cluster into its centroid (Deep
  Compression's codebook fine-tuning, Fig. 4.1);
- ``pq``: weight = sub-codebooks[codes], trained the same way;
- binary layers: their real weights are clipped to [-1, 1] after every step.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize, prune

from cnnlab.compression.binary_layers import BINARY_LAYERS, ClipBinaryWeights


class SharedWeights(nn.Module):
    """Parametrization ``W = codebook[codes]`` (times a 0/1 mask for pruned layers)."""

    def __init__(self, codebook: torch.Tensor, codes: torch.Tensor, mask: torch.Tensor | None):
        super().__init__()
        self.codebook = nn.Parameter(codebook.clone())
        self.register_buffer("codes", codes)
        self.register_buffer("mask", mask)

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        w = self.codebook[self.codes]  # gather: backward scatter-adds per cluster
        return w * self.mask if self.mask is not None else w

    @staticmethod
    def from_weight(weight: torch.Tensor, sparse: bool) -> SharedWeights:
        """Recover codebook and codes from a weight that holds few distinct values."""
        w = weight.detach()
        codebook, codes = torch.unique(w, sorted=True, return_inverse=True)
        mask = (w != 0).to(w.dtype) if sparse else None
        return SharedWeights(codebook, codes, mask)


class PQWeights(nn.Module):
    """Parametrization ``W[:, j*d:(j+1)*d] = books[j, codes[:, j]]`` (product quantisation)."""

    def __init__(self, books: torch.Tensor, codes: torch.Tensor) -> None:
        super().__init__()
        self.books = nn.Parameter(books.clone())  # (s, k, d)
        self.register_buffer("codes", codes)  # (m, s)

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        s = self.books.shape[0]
        parts = self.books[torch.arange(s, device=self.codes.device), self.codes]  # (m, s, d)
        return parts.reshape(self.codes.shape[0], -1)

    @staticmethod
    def from_weight(weight: torch.Tensor, sub: int) -> PQWeights:
        m, n = weight.shape
        parts = weight.detach().reshape(m, n // sub, sub).transpose(0, 1)  # (s, m, d)
        books, codes = [], []
        for j in range(parts.shape[0]):
            uniq, inverse = torch.unique(parts[j], dim=0, return_inverse=True)
            books.append(uniq)
            codes.append(inverse)
        k = max(b.shape[0] for b in books)
        padded = torch.zeros(len(books), k, sub, dtype=weight.dtype, device=weight.device)
        for j, b in enumerate(books):
            padded[j, : b.shape[0]] = b
        return PQWeights(padded, torch.stack(codes, dim=1))


def _owner(model: nn.Module, key: str) -> tuple[nn.Module, str]:
    path, _, name = key.rpartition(".")
    return (model.get_submodule(path) if path else model), name


@contextlib.contextmanager
def constrained(model: nn.Module, encodings: dict[str, dict[str, Any]]) -> Iterator[list]:
    """Apply the encodings' training constraints; yield the callbacks training needs; bake."""
    pruned, parametrized = [], []
    for key, enc in encodings.items():
        module, name = _owner(model, key)
        weight = getattr(module, name)
        if enc["kind"] == "sparse":
            prune.custom_from_mask(module, name, mask=weight.detach() != 0)
            pruned.append((module, name))
        elif enc["kind"] in ("codebook", "pq"):
            param = (
                SharedWeights.from_weight(weight, bool(enc.get("sparse")))
                if enc["kind"] == "codebook"
                else PQWeights.from_weight(weight, int(enc["sub"]))
            )
            parametrize.register_parametrization(module, name, param)
            parametrized.append((module, name))
    callbacks = [ClipBinaryWeights()] if any(isinstance(m, BINARY_LAYERS)
                                             for m in model.modules()) else []  # fmt: skip
    try:
        yield callbacks
    finally:
        for module, name in pruned:
            prune.remove(module, name)
        for module, name in parametrized:
            parametrize.remove_parametrizations(module, name, leave_parametrized=True)
