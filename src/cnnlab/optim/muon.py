"""Muon for the convolution filters, another torch optimiser for everything else, as one.

Muon (Jordan et al. 2024, https://kellerjordan.github.io/posts/muon/; ``torch.optim.Muon``)
replaces each momentum update of a weight matrix by its orthogonalisation (5 Newton-Schulz
iterations: the update's singular values are pushed to ~1). torch's Muon takes 2-D
parameters only; airbench's recipe uses it for the 4-D conv filters, each viewed as the matrix
``(out, in * kh * kw)``, and a standard optimiser for biases, norms and the classifier.

:class:`MuonWith` is one ``torch.optim.Optimizer`` over both, so schedules (``LambdaLR`` over
``param_groups``), gradient clipping, ``zero_grad`` and checkpoints treat it like any other:

- its ``param_groups`` hold the real parameters: the filter groups (``"muon": True``, with
  Muon's hyper-parameters) first, then the other optimiser's own group dicts;
- its ``state`` is shared with both inner optimisers, so ``state_dict()`` has the standard
  ``{"state", "param_groups"}`` form (a filter's Muon momentum buffer is stored as its 2-D
  matrix) and ``load_state_dict`` restores both.

Each step, the inner ``torch.optim.Muon`` works on 2-D views that share the filters' storage:
the view follows the filter's memory layout (a channels_last filter is viewed as
``(out, kh * kw * in)``), which only permutes the matrix's columns, and orthogonalisation
commutes with a column permutation, so the update is the same in either layout.

torch's Muon always orthogonalises in bf16. Where bf16 is emulated (CPUs without AVX512-BF16
or AMX) that iteration is ~30x slower than in fp32: on an AVX2 EPYC, 2.1 s against 0.07 s per
step for fastnet 64/128/256's filters, 61% of a training step (profiled 2026-12-06,
benchmarks/trainer/muon_ns.md). So the inner optimiser is :class:`Muon`, torch's with the
iteration's dtype as an option: bf16 where it is native, fp32 elsewhere, unless told.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

from cnnlab.hardware import native_bf16

MUON_KEYS = ("lr", "weight_decay", "momentum", "nesterov", "ns_coefficients", "eps", "ns_steps",
             "adjust_lr_fn")  # fmt: skip


# ``ns_precision`` names: None lets each step pick bf16 where it is native, fp32 elsewhere
NS_DTYPES: dict[str, torch.dtype | None] = {"auto": None, "bf16": torch.bfloat16,
                                            "fp32": torch.float32}  # fmt: skip


def orthogonalize(
    update: torch.Tensor,
    coefficients: tuple[float, float, float],
    steps: int,
    eps: float,
    dtype: torch.dtype,
) -> torch.Tensor:
    """Push ``update``'s singular values towards 1: torch.optim.Muon's quintic Newton-Schulz
    iteration (Jordan 2024), computed in ``dtype``, the matrix kept wide (rows <= columns)."""
    a, b, c = coefficients
    x = update.to(dtype)
    tall = x.size(0) > x.size(1)
    if tall:
        x = x.T
    x = x / x.norm().clamp(min=eps)  # spectral norm <= Frobenius norm = 1
    for _ in range(steps):
        gram = x @ x.T
        poly = torch.addmm(gram, gram, gram, beta=b, alpha=c)  # b * A + c * A^2
        x = torch.addmm(x, poly, x, beta=a)  # a * X + (b * A + c * A^2) X
    return x.T if tall else x


def adjusted_lr(lr: float, rule: str | None, shape: torch.Size) -> float:
    """Muon's per-matrix learning rate (torch.optim.Muon's ``adjust_lr_fn``)."""
    rows, cols = shape[:2]
    if rule is None or rule == "original":
        return lr * math.sqrt(max(1.0, rows / cols))
    if rule == "match_rms_adamw":
        return lr * 0.2 * math.sqrt(max(rows, cols))
    return lr


class Muon(torch.optim.Muon):
    """``torch.optim.Muon`` whose Newton-Schulz iteration runs in ``ns_dtype``.

    ``None`` picks per parameter: bf16 where the device has it natively (as torch does
    everywhere), fp32 elsewhere. Same options, state and update as torch's otherwise (a test
    checks it step for step against ``torch.optim.Muon`` in bf16).
    """

    def __init__(self, params: Any, *, ns_dtype: torch.dtype | None = None, **options: Any):
        super().__init__(params, **options)
        self.ns_dtype = ns_dtype

    def dtype_for(self, p: torch.Tensor) -> torch.dtype:
        if self.ns_dtype is not None:
            return self.ns_dtype
        return torch.bfloat16 if native_bf16(p.device) else torch.float32

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, decay, momentum = group["lr"], group["weight_decay"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if torch.is_complex(p) or p.grad.is_sparse:
                    raise RuntimeError(
                        "muon: complex parameters and sparse gradients are not supported"
                    )
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(
                        p.grad, memory_format=torch.preserve_format
                    )
                buf = state["momentum_buffer"]
                buf.lerp_(p.grad, 1 - momentum)
                update = p.grad.lerp(buf, momentum) if group["nesterov"] else buf
                update = orthogonalize(update, group["ns_coefficients"], group["ns_steps"],
                                       group["eps"], self.dtype_for(p))  # fmt: skip
                p.mul_(1 - lr * decay)
                p.add_(update, alpha=-adjusted_lr(lr, group["adjust_lr_fn"], p.shape))
        return loss


def matrix_view(t: torch.Tensor) -> torch.Tensor:
    """A 4-D filter ``(out, in, kh, kw)`` as a 2-D view sharing its storage."""
    if t.is_contiguous():
        return t.view(t.shape[0], -1)
    if t.is_contiguous(memory_format=torch.channels_last):
        return t.permute(0, 2, 3, 1).view(t.shape[0], -1)  # (out, kh, kw, in) order in memory
    raise ValueError(f"muon: cannot view a filter with strides {t.stride()} as a matrix")


def matrix_like(grad: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    """``grad`` as a matrix with the columns in the order of ``matrix_view(param)``."""
    if param.is_contiguous():
        return grad.reshape(grad.shape[0], -1)
    return grad.permute(0, 2, 3, 1).reshape(grad.shape[0], -1)


class MuonWith(torch.optim.Optimizer):
    """:class:`Muon` on every 4-D parameter (conv filters), ``rest`` on the others.

    Args:
        params: parameters or param-group dicts (as from ``optimizers.param_groups``).
        lr: the other optimiser's learning rate; filters get ``muon_lr`` (each group keeps its
            own multiplier: a group with ``lr = s * lr`` gives its filters ``s * muon_lr``).
        muon_lr, muon_options: Muon's learning rate and its other options (``momentum``,
            ``nesterov``, ``weight_decay``, ``ns_steps``, ``adjust_lr_fn``...).
        ns_dtype: the Newton-Schulz iteration's dtype (None: bf16 where native, else fp32).
        make_rest: builds the other optimiser from its param groups (defaults filled there).
    """

    def __init__(
        self,
        params: Iterable[Any],
        *,
        lr: float,
        muon_lr: float,
        make_rest: Callable[[list[dict[str, Any]]], torch.optim.Optimizer],
        muon_options: dict[str, Any] | None = None,
        ns_dtype: torch.dtype | None = None,
    ) -> None:
        filters, others = _split(_as_groups(params), lr, muon_lr)
        self._views: list[tuple[torch.Tensor, torch.Tensor]] = []  # (filter, its matrix view)
        self._muon = None
        if filters:
            mats = []
            for g in filters:
                views = [matrix_view(p.detach()) for p in g["params"]]
                self._views += list(zip(g["params"], views, strict=True))
                mats.append({"params": views})
            self._muon = Muon(mats, lr=muon_lr, ns_dtype=ns_dtype, **(muon_options or {}))
            for group, inner in zip(filters, self._muon.param_groups, strict=True):
                for key in MUON_KEYS:
                    group.setdefault(key, inner[key])  # the filter group shows Muon's options
        self._rest = make_rest(others) if others else None
        rest_groups = self._rest.param_groups if self._rest is not None else []
        super().__init__([*filters, *rest_groups], defaults={})
        self._link()

    def _link(self) -> None:
        """Point both inner optimisers at this optimiser's groups and state."""
        if self._rest is not None:
            self._rest.param_groups = [g for g in self.param_groups if not g.get("muon")]
            self._rest.state = self.state
        if self._muon is not None:
            for p, m in self._views:
                self._muon.state[m] = self.state[p]  # the same dict: Muon writes, we save

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._link()

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if self._muon is not None:
            filters = [g for g in self.param_groups if g.get("muon")]
            for group, inner in zip(filters, self._muon.param_groups, strict=True):
                for key in MUON_KEYS:  # the schedule changes this optimiser's groups
                    inner[key] = group[key]
            for p, m in self._views:
                m.data = matrix_view(p.data)  # re-view: a .to() may have moved the storage
                m.grad = None if p.grad is None else matrix_like(p.grad, p)
            self._muon.step()
        if self._rest is not None:
            self._rest.step()
        return loss


def _as_groups(params: Iterable[Any]) -> list[dict[str, Any]]:
    items = list(params)
    if items and isinstance(items[0], dict):
        return [dict(g) for g in items]
    return [{"params": items}]


def _split(
    groups: list[dict[str, Any]], lr: float, muon_lr: float
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Each group splits into its 4-D filters (Muon) and everything else (kept as it is)."""
    filters, others = [], []
    for g in groups:
        ps = list(g["params"])
        opts = {k: v for k, v in g.items() if k not in ("params", "weight_decay")}
        conv = [p for p in ps if p.ndim == 4]
        rest = [p for p in ps if p.ndim != 4]
        if conv:
            scale = g.get("lr", lr) / lr
            filters.append({**opts, "params": conv, "lr": muon_lr * scale, "muon": True})
        if rest:
            others.append({**{k: v for k, v in g.items() if k != "params"}, "params": rest})
    return filters, others
