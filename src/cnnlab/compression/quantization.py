"""Weight sharing by k-means and product quantisation (Handbook §4.3; int8 PTQ: ``int8.py``).

**Scalar k-means** (Gong et al. 2014; Han et al. 2016, Deep Compression): per layer, the
weights are clustered into k = 2**bits values (Lloyd's algorithm in 1-D, linear
initialisation between min and max, which Han et al. found best), each weight is replaced by
its centroid, and the layer stores a b-bit code per weight plus a k-entry float32 codebook:
``n log2(k) + 32 k`` bits (Part E item 18). A pruned layer clusters only its non-zeros and
keeps the zeros as a mask. Codebook fine-tuning then trains the centroids from the gradients
of their weights, gathered per cluster (autograd of the codebook lookup): averaged by default
(``codebook_grad: mean``), or summed as in Fig. 4.1 (``sum``), which needs a learning rate
about a cluster's size smaller (why: ``constraints.py``).

**Product quantisation** (Jegou et al. 2011; Gong et al. 2014) of Linear layers: each row of
``W (m x n)`` is cut into s = n / ``sub`` sub-vectors; per subspace, k-means on the m
sub-vectors gives k code vectors; the layer stores ``32 k n + m s log2(k)`` bits (Part E item
19). Its codebooks are fine-tuned the same way.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cnnlab.compression.binary_layers import BINARY_LAYERS
from cnnlab.compression.constraints import GRAD_RULES
from cnnlab.compression.encoding import codebook_bits, pq_bits
from cnnlab.compression.packing import bits_for
from cnnlab.compression.state import CompressState, weight_modules
from cnnlab.compression.steps import COMPRESSION, Step, check_choice, check_int

TARGETS = ("all", "conv", "linear")


def kmeans_1d(values: torch.Tensor, k: int, iters: int = 50) -> tuple[torch.Tensor, torch.Tensor]:
    """1-D k-means with linear init: (sorted centroids (k,), code of each value)."""
    x = values.detach().reshape(-1).double().cpu()
    if x.numel() == 0:
        raise ValueError("kmeans_1d: no values to cluster")
    c = torch.linspace(float(x.min()), float(x.max()), k, dtype=torch.float64)
    codes = torch.zeros(x.numel(), dtype=torch.long)
    for _ in range(iters):
        codes = torch.bucketize(x, (c[1:] + c[:-1]) / 2)  # nearest centroid (sorted c)
        sums = torch.zeros(k, dtype=torch.float64).index_add_(0, codes, x)
        counts = torch.bincount(codes, minlength=k)
        new = torch.where(counts > 0, sums / counts.clamp_min(1), c).sort().values
        if torch.equal(new, c):
            break
        c = new
    codes = torch.bucketize(x, (c[1:] + c[:-1]) / 2)
    return c.float(), codes.reshape(values.shape)


def kmeans_vectors(
    x: torch.Tensor, k: int, iters: int = 30, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched k-means: ``x (s, m, d)`` -> code vectors (s, k, d) and codes (s, m)."""
    s, m, d = x.shape
    k = min(k, m)
    gen = torch.Generator().manual_seed(seed)
    first = torch.rand(s, m, generator=gen).argsort(dim=1)[:, :k]  # k distinct rows each
    books = torch.gather(x, 1, first[:, :, None].expand(s, k, d)).clone()
    codes = torch.full((s, m), -1, dtype=torch.long)
    offsets = (torch.arange(s) * k)[:, None]
    for _ in range(iters):
        new_codes = torch.cdist(x, books).argmin(dim=2)  # (s, m)
        if torch.equal(new_codes, codes):
            break
        codes = new_codes
        flat = (codes + offsets).reshape(-1)
        sums = torch.zeros(s * k, d, dtype=x.dtype).index_add_(0, flat, x.reshape(-1, d))
        counts = torch.bincount(flat, minlength=s * k)[:, None]
        books = torch.where(counts > 0, sums / counts.clamp_min(1), books.reshape(s * k, d))
        books = books.reshape(s, k, d)
    return books, codes


def product_quantize(w: torch.Tensor, sub: int, k: int, seed: int = 0) -> torch.Tensor:
    """The PQ approximation of a matrix ``w (m, n)`` with sub-vectors of length ``sub``."""
    m, n = w.shape
    parts = w.detach().float().cpu().reshape(m, n // sub, sub).transpose(0, 1)  # (s, m, sub)
    books, codes = kmeans_vectors(parts.contiguous(), k, seed=seed)
    approx = books[torch.arange(books.shape[0])[:, None], codes]  # (s, m, sub)
    return approx.transpose(0, 1).reshape(m, n)


def _targets(model: nn.Module, layers: str) -> list[tuple[str, nn.Module]]:
    out = []
    for name, m in weight_modules(model):
        if isinstance(m, BINARY_LAYERS):
            continue  # already 1 bit per weight
        if layers == "all" or (layers == "linear") == isinstance(m, nn.Linear):
            out.append((name, m))
    return out


@torch.no_grad()
def kmeans_share(state: CompressState, bits: int, conv_bits: int | None,
                 linear_bits: int | None, layers: str,
                 grad: str = "mean") -> list[dict[str, Any]]:  # fmt: skip
    """Replace each target layer's weights by k-means centroids; declare codebook encodings."""
    details = []
    for name, m in _targets(state.model, layers):
        b = (linear_bits if isinstance(m, nn.Linear) else conv_bits) or bits
        key, w = f"{name}.weight", m.weight
        prior = state.encodings.get(key, {})
        sparse = prior.get("kind") == "sparse" or prior.get("sparse", False)
        mask = w != 0 if sparse else torch.ones_like(w, dtype=torch.bool)
        centroids, codes = kmeans_1d(w[mask], 1 << b)
        new = torch.zeros_like(w)
        new[mask] = centroids[codes].to(w.device, w.dtype)
        w.copy_(new)
        state.encodings[key] = {"kind": "codebook", "bits": b, "sparse": sparse,
                                "shape": list(w.shape), "grad": grad}  # fmt: skip
        n, nnz = w.numel(), int(mask.sum())
        details.append({
            "layer": name, "bits": b, "k": 1 << b, "distinct": int(torch.unique(w[mask]).numel()),
            "weights": n, "sparse": sparse,
            "storage_bits": codebook_bits(n, 1 << b, nnz if sparse else None),
            "float32_bits": 32 * n,
        })  # fmt: skip
    return details


@COMPRESSION.register("kmeans")
def kmeans(
    *, bits: int = 4, conv_bits: int | None = None, linear_bits: int | None = None,
    layers: str = "all", finetune_epochs: int = 1, codebook_grad: str = "mean",
) -> Step:  # fmt: skip
    """k-means weight sharing per layer (Deep Compression), then codebook fine-tuning.

    Each centroid moves by the mean (default) or the sum of its weights' gradients
    (``codebook_grad``)."""
    for opt, v in (("bits", bits), ("conv_bits", conv_bits), ("linear_bits", linear_bits)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 8):
            raise ValueError(f"{opt} must be an integer from 1 to 8, got {v!r}")
    options = {"bits": bits, "conv_bits": conv_bits, "linear_bits": linear_bits,
               "layers": check_choice("layers", layers, TARGETS),
               "finetune_epochs": check_int("finetune_epochs", finetune_epochs),
               "codebook_grad": check_choice("codebook_grad", codebook_grad, GRAD_RULES),
               }  # fmt: skip

    def apply(state: CompressState, ctx: Any) -> dict[str, Any]:
        per_layer = kmeans_share(state, bits, conv_bits, linear_bits, layers, codebook_grad)
        ctx.finetune(state, finetune_epochs)
        return {"layers": per_layer}

    return Step("kmeans", options, apply)


@COMPRESSION.register("product_quantize")
def product_quantize_step(
    *, sub: int = 4, k: int = 16, skip_head: bool = False, finetune_epochs: int = 1,
    codebook_grad: str = "mean",
) -> Step:  # fmt: skip
    """Product quantisation of Linear layers (sub-vector codebooks), then fine-tuning.

    Each code vector moves by the mean (default) or the sum of the gradients of the rows
    sharing it (``codebook_grad``)."""
    options = {"sub": check_int("sub", sub, 1), "k": check_int("k", k, 2),
               "skip_head": bool(skip_head),
               "finetune_epochs": check_int("finetune_epochs", finetune_epochs),
               "codebook_grad": check_choice("codebook_grad", codebook_grad, GRAD_RULES),
               }  # fmt: skip

    @torch.no_grad()
    def quantize(state: CompressState) -> list[dict[str, Any]]:
        details = []
        head = getattr(state.model, "head", None)
        for name, m in _targets(state.model, "linear"):
            m_rows, n = m.weight.shape
            if n % sub or (skip_head and m is head):
                details.append({"layer": name, "quantized": False,
                                "why": f"{n} columns not divisible by {sub}" if n % sub
                                else "head skipped"})  # fmt: skip
                continue
            m.weight.copy_(product_quantize(m.weight, sub, k).to(m.weight))
            key = f"{name}.weight"
            state.encodings[key] = {"kind": "pq", "sub": sub, "k": k, "shape": [m_rows, n],
                                    "grad": codebook_grad}  # fmt: skip
            details.append({"layer": name, "quantized": True, "storage_bits":
                            pq_bits(m_rows, n, sub, k), "float32_bits": 32 * m_rows * n,
                            "code_bits": bits_for(k)})  # fmt: skip
        return details

    def apply(state: CompressState, ctx: Any) -> dict[str, Any]:
        per_layer = quantize(state)
        ctx.finetune(state, finetune_epochs)
        return {"layers": per_layer}

    return Step("product_quantize", options, apply)
