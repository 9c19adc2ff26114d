"""Optimisers by name (handbook §11.2.4), all torch's own implementations.

Builder contract: ``builder(*, params, lr, weight_decay, **options) -> torch.optim.Optimizer``.
``build_optimizer`` splits the model's parameters into two groups so that weight decay (the l2
regulariser of §10.1) skips normalisation weights and biases unless asked otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn as nn

from cnnlab.registry import OPTIMIZERS

_NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)


def param_groups(
    model: nn.Module, weight_decay: float, decay_norm_and_bias: bool = False
) -> list[dict[str, Any]]:
    """Two groups: decayed weights, and norm/bias parameters without decay (frozen ones out)."""
    if decay_norm_and_bias or weight_decay == 0:
        return [{"params": [p for p in model.parameters() if p.requires_grad]}]
    decay, no_decay = [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            is_bias = name.endswith("bias") or p.ndim <= 1
            (no_decay if is_bias or isinstance(module, _NORM_TYPES) else decay).append(p)
    groups = [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def scaled_groups(
    groups: list[dict[str, Any]], scales: list[tuple[list[nn.Parameter], float]], lr: float
) -> list[dict[str, Any]]:
    """Split each group further by learning-rate multiplier (discriminative fine-tuning)."""
    scale_of = {id(p): s for ps, s in scales for p in ps}
    out = []
    for group in groups:
        by_scale: dict[float, list[nn.Parameter]] = {}
        for p in group["params"]:
            by_scale.setdefault(scale_of.get(id(p), 1.0), []).append(p)
        for s, ps in by_scale.items():
            out.append({**group, "params": ps, "lr": lr * s})
    return out


def build_optimizer(
    model: nn.Module, cfg: Any, scales: list[tuple[list[nn.Parameter], float]] | None = None
) -> torch.optim.Optimizer:
    """Optimiser from an ``OptimConfig`` (name, lr, weight_decay, params); ``scales`` gives
    per-parameter learning-rate multipliers (fine-tuning)."""
    groups = param_groups(model, cfg.weight_decay, cfg.decay_norm_and_bias)
    if scales:
        groups = scaled_groups(groups, scales, cfg.lr)
    return OPTIMIZERS.build(
        cfg.name, params=groups, lr=cfg.lr, weight_decay=cfg.weight_decay, **dict(cfg.params)
    )


Params = Iterable[Any]


def fused_on_gpu(params: Params) -> tuple[list[Any], dict[str, Any]]:
    """``(params as a list, options)``: ``{"fused": True}`` when every parameter is a
    floating-point CUDA tensor, else ``{}`` (the CPU keeps torch's default implementation).
    torch's fused Adam/AdamW/SGD update every tensor in one kernel launch instead of several per
    group, and under fp16's grad scaler check for inf on the device, where any other optimiser
    makes the scaler read the check back every step: a host sync (issue 23)."""
    groups = [{**g, "params": list(g["params"])} if isinstance(g, dict) else g for g in params]
    tensors = [t for g in groups for t in (g["params"] if isinstance(g, dict) else [g])]
    on_gpu = bool(tensors) and all(t.is_cuda and t.is_floating_point() for t in tensors)
    return groups, {"fused": True} if on_gpu else {}


@OPTIMIZERS.register("sgd")
def sgd(
    *,
    params: Params,
    lr: float,
    weight_decay: float = 0.0,
    momentum: float = 0.0,
    nesterov: bool = False,
    dampening: float = 0.0,
) -> torch.optim.Optimizer:
    """Mini-batch SGD, w <- w - lr * g (§1.4, eq. 1.6); momentum/nesterov optional."""
    params, fused = fused_on_gpu(params)
    return torch.optim.SGD(
        params,
        lr=lr,
        momentum=momentum,
        nesterov=nesterov,
        dampening=dampening,
        weight_decay=weight_decay,
        **fused,
    )


@OPTIMIZERS.register("momentum")
def momentum(
    *, params: Params, lr: float, weight_decay: float = 0.0, momentum: float = 0.9
) -> torch.optim.Optimizer:
    """SGD with momentum mu = 0.9, v <- mu v + g; w <- w - lr v (§11.2.4)."""
    params, fused = fused_on_gpu(params)
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, **fused)


@OPTIMIZERS.register("nesterov")
def nesterov(
    *, params: Params, lr: float, weight_decay: float = 0.0, momentum: float = 0.9
) -> torch.optim.Optimizer:
    """Nesterov momentum (mu = 0.9): the gradient is taken at the look-ahead point (§11.2.4)."""
    params, fused = fused_on_gpu(params)
    return torch.optim.SGD(
        params, lr=lr, momentum=momentum, nesterov=True, weight_decay=weight_decay, **fused
    )


@OPTIMIZERS.register("adagrad")
def adagrad(
    *, params: Params, lr: float, weight_decay: float = 0.0, eps: float = 1e-6
) -> torch.optim.Optimizer:
    """Adagrad: lr / sqrt(sum of squared gradients + eps) per parameter; book eps 1e-6."""
    return torch.optim.Adagrad(params, lr=lr, eps=eps, weight_decay=weight_decay)


@OPTIMIZERS.register("adadelta")
def adadelta(
    *, params: Params, lr: float, weight_decay: float = 0.0, rho: float = 0.95, eps: float = 1e-6
) -> torch.optim.Optimizer:
    """Adadelta with the book's rho = 0.95, eps = 1e-6 (§11.2.4); set lr = 1.0 for the paper."""
    return torch.optim.Adadelta(params, lr=lr, rho=rho, eps=eps, weight_decay=weight_decay)


@OPTIMIZERS.register("rmsprop")
def rmsprop(
    *,
    params: Params,
    lr: float,
    weight_decay: float = 0.0,
    alpha: float = 0.9,
    eps: float = 1e-6,
    momentum: float = 0.0,
) -> torch.optim.Optimizer:
    """RMSProp: running mean of g^2 with decay rho = 0.9, eps = 1e-6 (§11.2.4)."""
    return torch.optim.RMSprop(
        params, lr=lr, alpha=alpha, eps=eps, momentum=momentum, weight_decay=weight_decay
    )


@OPTIMIZERS.register("adam")
def adam(
    *,
    params: Params,
    lr: float,
    weight_decay: float = 0.0,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    amsgrad: bool = False,
) -> torch.optim.Optimizer:
    """Adam with bias-corrected moments; book defaults beta1 .9, beta2 .999, eps 1e-8."""
    params, fused = fused_on_gpu(params)
    return torch.optim.Adam(
        params, lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
        **fused,
    )  # fmt: skip


@OPTIMIZERS.register("adamw")
def adamw(
    *,
    params: Params,
    lr: float,
    weight_decay: float = 0.0,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
) -> torch.optim.Optimizer:
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019)."""
    params, fused = fused_on_gpu(params)
    return torch.optim.AdamW(
        params, lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay, **fused
    )


REST = {"adamw": adamw, "adam": adam, "nesterov": nesterov, "sgd": sgd}


@OPTIMIZERS.register("muon")
def muon(
    *,
    params: Params,
    lr: float,
    weight_decay: float = 0.0,
    rest: str = "adamw",
    muon_lr: float = 0.05,
    muon_momentum: float = 0.9,
    muon_nesterov: bool = True,
    muon_weight_decay: float = 0.0,
    ns_steps: int = 5,
    ns_precision: str = "auto",
    beta1: float = 0.9,
    beta2: float = 0.999,
    momentum: float = 0.9,
) -> torch.optim.Optimizer:
    """Muon (torch.optim.Muon, Jordan 2024) for the conv filters, ``rest`` for the others.

    The filters (every 4-D parameter) take Muon's orthogonalised momentum updates at
    ``muon_lr`` (``muon_momentum``, Nesterov, decoupled ``muon_weight_decay``); biases, norms and
    linear layers take ``rest`` (adamw, adam, nesterov or sgd) at ``lr`` / ``weight_decay``
    (``beta1``/``beta2`` for the Adams, ``momentum`` for nesterov). One optimiser object for
    the schedule and checkpoints (``cnnlab.optim.muon.MuonWith``). ``ns_precision``: the
    dtype of Muon's ``ns_steps`` Newton-Schulz iterations, bf16, fp32 or auto (bf16 where the
    hardware has it natively, fp32 where it would be emulated and ~30x slower).
    """
    from cnnlab.optim.muon import NS_DTYPES, MuonWith

    if rest not in REST:
        raise ValueError(f"rest: expected one of {', '.join(REST)}, found {rest!r}")
    if not muon_lr > 0:
        raise ValueError(f"muon_lr: expected a learning rate > 0, found {muon_lr}")
    if ns_precision not in NS_DTYPES:
        raise ValueError(
            f"ns_precision: expected one of {', '.join(NS_DTYPES)}, found {ns_precision!r}"
        )
    options: dict[str, Any] = {"beta1": beta1, "beta2": beta2} if "adam" in rest else {}
    if rest == "nesterov":
        options["momentum"] = momentum

    def make_rest(groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
        return REST[rest](params=groups, lr=lr, weight_decay=weight_decay, **options)

    muon_options = {"momentum": muon_momentum, "nesterov": muon_nesterov,
                    "weight_decay": muon_weight_decay, "ns_steps": ns_steps}  # fmt: skip
    return MuonWith(params, lr=lr, muon_lr=muon_lr, make_rest=make_rest,
                    muon_options=muon_options, ns_dtype=NS_DTYPES[ns_precision])  # fmt: skip
