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

The summed gradient is the exact gradient of the loss with respect to a centroid, but a
centroid shared by n weights then moves n times as far per step as one weight does under plain
fine-tuning at the same learning rate. With the run's fine-tuning rate that diverges (measured:
the small VGG, 80% pruned then 4-bit, 94.31% before fine-tuning, 16.7% after 150 SGD steps at
lr 0.005 with summed gradients, 94.67% with averaged ones; benchmarks/compression/README.md).
So ``grad: mean`` (the default) divides each centroid's gradient by its cluster's size, the
average of its weights' gradients; ``grad: sum`` keeps the handbook's literal rule for a
learning rate chosen for it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize, prune

from cnnlab.compression.binary_layers import BINARY_LAYERS, ClipBinaryWeights

GRAD_RULES = ("mean", "sum")


class _ScaleGrad(torch.autograd.Function):
    """Identity forward (the very same values); backward multiplies the gradient by ``scale``."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(scale)
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (scale,) = ctx.saved_tensors
        return grad * scale, None


def _per_member(counts: torch.Tensor, grad: str) -> torch.Tensor | None:
    """The gradient scale of each shared entry: 1 / its members (``mean``) or none (``sum``)."""
    if grad not in GRAD_RULES:
        raise ValueError(f"codebook grad must be one of {', '.join(GRAD_RULES)}, got {grad!r}")
    return 1.0 / counts.clamp_min(1).float() if grad == "mean" else None


class SharedWeights(nn.Module):
    """Parametrization ``W = codebook[codes]`` (times a 0/1 mask for pruned layers); ``grad``:
    the centroid's gradient is the mean (default) or the sum of its weights' gradients."""

    def __init__(self, codebook: torch.Tensor, codes: torch.Tensor, mask: torch.Tensor | None,
                 grad: str = "mean") -> None:  # fmt: skip
        super().__init__()
        self.codebook = nn.Parameter(codebook.clone())
        self.register_buffer("codes", codes)
        self.register_buffer("mask", mask)
        members = codes if mask is None else codes[mask != 0]  # pruned weights do not count
        counts = torch.bincount(members.reshape(-1), minlength=codebook.numel())
        scale = _per_member(counts, grad)
        self.register_buffer("grad_scale", None if scale is None else scale.to(codebook.dtype))

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        book = self.codebook
        if self.grad_scale is not None:
            book = _ScaleGrad.apply(book, self.grad_scale)
        w = book[self.codes]  # gather: backward scatter-adds per cluster
        return w * self.mask if self.mask is not None else w

    @staticmethod
    def from_weight(weight: torch.Tensor, sparse: bool, grad: str = "mean") -> SharedWeights:
        """Recover codebook and codes from a weight that holds few distinct values."""
        w = weight.detach()
        codebook, codes = torch.unique(w, sorted=True, return_inverse=True)
        mask = (w != 0).to(w.dtype) if sparse else None
        return SharedWeights(codebook, codes, mask, grad)


class PQWeights(nn.Module):
    """Parametrization ``W[:, j*d:(j+1)*d] = books[j, codes[:, j]]`` (product quantisation)."""

    def __init__(self, books: torch.Tensor, codes: torch.Tensor, grad: str = "mean") -> None:
        super().__init__()
        self.books = nn.Parameter(books.clone())  # (s, k, d)
        self.register_buffer("codes", codes)  # (m, s)
        s, k, _ = books.shape
        flat = (codes + torch.arange(s, device=codes.device) * k).reshape(-1)
        counts = torch.bincount(flat, minlength=s * k).reshape(s, k, 1)  # rows per code vector
        scale = _per_member(counts, grad)
        self.register_buffer("grad_scale", None if scale is None else scale.to(books.dtype))

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        books = self.books
        if self.grad_scale is not None:
            books = _ScaleGrad.apply(books, self.grad_scale)
        s = books.shape[0]
        parts = books[torch.arange(s, device=self.codes.device), self.codes]  # (m, s, d)
        return parts.reshape(self.codes.shape[0], -1)

    @staticmethod
    def from_weight(weight: torch.Tensor, sub: int, grad: str = "mean") -> PQWeights:
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
        return PQWeights(padded, torch.stack(codes, dim=1), grad)


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
            grad = enc.get("grad", "mean")
            param = (
                SharedWeights.from_weight(weight, bool(enc.get("sparse")), grad)
                if enc["kind"] == "codebook"
                else PQWeights.from_weight(weight, int(enc["sub"]), grad)
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
