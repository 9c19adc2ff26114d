"""Low-rank approximation of weight layers by truncated SVD (Handbook §4.1).

- Linear (Denton et al. 2014): ``W (out x in) = U S V^T``; keeping k singular values gives two
  layers, ``in -> k`` holding ``S_k V_k^T`` and ``k -> out`` holding ``U_k`` (with the bias).
- Convolution, **channel** scheme: SVD of the ``C_out x (C_in k_h k_w)`` matrix; a k_h x k_w
  conv with r filters (rows of ``S_r V_r^T``, the original stride/padding) followed by a 1x1
  conv expanding r -> C_out (``U_r``, the bias).
- Convolution, **spatial** scheme (Jaderberg et al. 2014, scheme 2): SVD of the
  ``(C_in k_h) x (C_out k_w)`` reshaping ``M[(c, y), (n, x)] = W[n, c, y, x]``; a vertical
  k_h x 1 conv ``C_in -> r`` then a horizontal 1 x k_w conv ``r -> C_out``, each factor taking
  sqrt of the singular values. Zero padding splits exactly (the first conv has no bias), so at
  full rank both schemes reproduce the layer.

Since the reshapes only permute entries, the squared Frobenius error of the rebuilt weight is
exactly the sum of the discarded sigma^2. Rank: the smallest k keeping a fraction ``energy``
of sum(sigma^2), or the largest k whose factor parameters stay within ``ratio`` of the layer's.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cnnlab.compression.arch import set_submodule
from cnnlab.compression.state import CompressState
from cnnlab.compression.steps import (
    COMPRESSION,
    Step,
    check_choice,
    check_fraction,
    check_int,
)

SCHEMES = ("channel", "spatial")
TARGETS = ("all", "linear", "conv")


def choose_rank(
    s: torch.Tensor, *, energy: float | None = None, ratio: float | None = None,
    full_params: int = 0, per_rank: int = 1,
) -> int:  # fmt: skip
    """Rank keeping ``energy`` of sum(sigma^2), or fitting ``ratio * full_params`` parameters
    at ``per_rank`` parameters per kept component (``ratio`` wins when both are given)."""
    if ratio is not None:
        return int(min(len(s), max(1, (ratio * full_params) // per_rank)))
    if energy is None:
        raise ValueError("choose_rank needs energy or ratio")
    sq = s.double().pow(2)
    kept = torch.cumsum(sq, 0) / sq.sum().clamp_min(1e-300)
    target = torch.tensor(energy - 1e-12, dtype=torch.float64)  # tolerate rounding at equality
    return int(min(len(s), int(torch.searchsorted(kept, target)) + 1))


def _svd(mat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    u, s, vh = torch.linalg.svd(mat.detach().double(), full_matrices=False)
    return u, s, vh


def svd_linear(layer: nn.Linear, rank: int) -> nn.Sequential:
    """Two Linear layers ``in -> rank -> out`` from the truncated SVD of ``layer.weight``."""
    u, s, vh = _svd(layer.weight)
    first = nn.Linear(layer.in_features, rank, bias=False)
    second = nn.Linear(rank, layer.out_features, bias=layer.bias is not None)
    with torch.no_grad():
        first.weight.copy_(s[:rank, None] * vh[:rank])  # (k, in)
        second.weight.copy_(u[:, :rank])  # (out, k)
        if layer.bias is not None:
            second.bias.copy_(layer.bias)
    return nn.Sequential(first, second)


def conv_channel_matrix(conv: nn.Conv2d) -> torch.Tensor:
    return conv.weight.detach().reshape(conv.out_channels, -1)  # (C_out, C_in*kh*kw)


def conv_spatial_matrix(conv: nn.Conv2d) -> torch.Tensor:
    n, c, kh, kw = conv.weight.shape
    # W[n, c, y, x] -> M[(c, y), (n, x)]: (C_out, C_in, kh, kw) -> (C_in*kh, C_out*kw)
    return conv.weight.detach().permute(1, 2, 0, 3).reshape(c * kh, n * kw)


def conv_channel_decompose(conv: nn.Conv2d, rank: int) -> nn.Sequential:
    """kxk conv with ``rank`` filters, then a 1x1 conv expanding to C_out (channel scheme)."""
    u, s, vh = _svd(conv_channel_matrix(conv))
    kh, kw = conv.kernel_size
    first = nn.Conv2d(conv.in_channels, rank, (kh, kw), conv.stride, conv.padding,
                      conv.dilation, bias=False, padding_mode=conv.padding_mode)  # fmt: skip
    second = nn.Conv2d(rank, conv.out_channels, 1, bias=conv.bias is not None)
    with torch.no_grad():
        first.weight.copy_((s[:rank, None] * vh[:rank]).reshape(rank, conv.in_channels, kh, kw))
        second.weight.copy_(u[:, :rank].reshape(conv.out_channels, rank, 1, 1))
        if conv.bias is not None:
            second.bias.copy_(conv.bias)
    return nn.Sequential(first, second)


def conv_spatial_decompose(conv: nn.Conv2d, rank: int) -> nn.Sequential:
    """k_h x 1 conv to ``rank`` channels, then 1 x k_w conv to C_out (Jaderberg scheme 2)."""
    u, s, vh = _svd(conv_spatial_matrix(conv))
    n, c, kh, kw = conv.weight.shape
    (sh, sw), (ph, pw), (dh, dw) = conv.stride, conv.padding, conv.dilation
    first = nn.Conv2d(c, rank, (kh, 1), (sh, 1), (ph, 0), (dh, 1), bias=False)
    second = nn.Conv2d(rank, n, (1, kw), (1, sw), (0, pw), (1, dw), bias=conv.bias is not None)
    root = s[:rank].sqrt()
    with torch.no_grad():
        # U[(c, y), r] -> (r, c, y, 1);  V[(n, x), r] -> (n, r, 1, x)
        first.weight.copy_((u[:, :rank] * root).T.reshape(rank, c, kh, 1))
        second.weight.copy_((vh[:rank].T * root).reshape(n, kw, rank).permute(0, 2, 1)[:, :, None])
        if conv.bias is not None:
            second.bias.copy_(conv.bias)
    return nn.Sequential(first, second)


def _plan(module: nn.Module, scheme: str) -> tuple[torch.Tensor, int, Any] | None:
    """(matrix to decompose, parameters per kept rank, decomposer) or None to leave as is."""
    if type(module) is nn.Linear:
        return module.weight.detach(), module.in_features + module.out_features, svd_linear
    if type(module) is not nn.Conv2d or module.groups != 1 or isinstance(module.padding, str):
        return None
    c, (kh, kw), n = module.in_channels, module.kernel_size, module.out_channels
    if scheme == "channel":
        return conv_channel_matrix(module), c * kh * kw + n, conv_channel_decompose
    if kh == 1 and kw == 1:
        return None  # a 1x1 conv has no spatial structure to split
    return conv_spatial_matrix(module), c * kh + n * kw, conv_spatial_decompose


def decompose_model(
    model: nn.Module, *, energy: float | None, ratio: float | None, layers: str = "all",
    scheme: str = "channel", skip_first: bool = True,
) -> list[dict[str, Any]]:  # fmt: skip
    """Replace every eligible layer of ``model`` by its low-rank pair (in place); per-layer
    details. Layers whose factors would not be smaller are left alone."""
    candidates = [(n, m) for n, m in model.named_modules() if type(m) in (nn.Conv2d, nn.Linear)]
    if skip_first and candidates:
        candidates = candidates[1:]  # the first layer sees the raw image: few inputs, keep it
    details = []
    for name, module in candidates:
        if layers != "all" and (layers == "linear") != isinstance(module, nn.Linear):
            continue
        plan = _plan(module, scheme)
        if plan is None:
            continue
        mat, per_rank, decomposer = plan
        s = torch.linalg.svdvals(mat.double())
        full = module.weight.numel()
        rank = choose_rank(s, energy=energy, ratio=ratio, full_params=full, per_rank=per_rank)
        kept = float(s[:rank].pow(2).sum() / s.pow(2).sum().clamp_min(1e-300))
        row = {"layer": name, "shape": list(module.weight.shape), "rank": rank,
               "full_rank": len(s), "energy_kept": kept}  # fmt: skip
        if rank * per_rank >= full:
            details.append({**row, "decomposed": False, "why": "factors would not be smaller"})
            continue
        set_submodule(model, name, decomposer(module, rank))
        details.append({**row, "decomposed": True, "params_before": full,
                        "params_after": rank * per_rank})  # fmt: skip
    return details


@COMPRESSION.register("lowrank")
def lowrank(
    *, energy: float = 0.9, ratio: float | None = None, layers: str = "all",
    conv_scheme: str = "channel", skip_first: bool = True, finetune_epochs: int = 1,
) -> Step:  # fmt: skip
    """Truncated-SVD low-rank factorisation of linear and conv layers, then fine-tuning."""
    energy = check_fraction("energy", energy) if energy != 1 else 1.0
    if ratio is not None:
        ratio = check_fraction("ratio", ratio)
    check_choice("layers", layers, TARGETS)
    check_choice("conv_scheme", conv_scheme, SCHEMES)
    check_int("finetune_epochs", finetune_epochs)
    options = {"energy": energy, "ratio": ratio, "layers": layers, "conv_scheme": conv_scheme,
               "skip_first": bool(skip_first), "finetune_epochs": finetune_epochs}  # fmt: skip

    def apply(state: CompressState, ctx: Any) -> dict[str, Any]:
        per_layer = decompose_model(state.model, energy=energy, ratio=ratio, layers=layers,
                                    scheme=conv_scheme, skip_first=bool(skip_first))  # fmt: skip
        n = sum(r["decomposed"] for r in per_layer)
        ctx.log(f"lowrank: {n} of {len(per_layer)} candidate layers factorised")
        state.sync_encodings()
        ctx.finetune(state, finetune_epochs)
        return {"layers": per_layer}

    return Step("lowrank", options, apply)
