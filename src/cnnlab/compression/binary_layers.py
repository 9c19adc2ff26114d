"""Binary layers (Handbook §4.4): BinaryConnect, BNN and XNOR-Net forms of Conv2d and Linear.

- BinaryConnect (Courbariaux et al. 2015): the forward pass uses ``sign(W)``; the real weights
  are kept, receive the gradient unchanged (straight-through estimator) and are clipped to
  [-1, 1] after every step (:class:`ClipBinaryWeights`). ``stochastic=True`` draws +1 with
  probability ``clip((w + 1) / 2, 0, 1)`` while training (Part E item 23); eval is deterministic.
- BNN (Hubara et al. 2016): binary weights and binary inputs ``sign(a)``, whose gradient passes
  only where ``|a| <= 1`` (the derivative of Htanh).
- XNOR-Net (Rastegari et al. 2016): ``alpha * sign(W)`` with one ``alpha = mean |W|`` per output
  channel (eq. 4.8), which minimises ``||W - alpha B||^2``; the gradient also flows through
  alpha. ``binary_inputs=True`` binarises the inputs too (without the paper's K scaling map).

sign(0) is taken as +1 so every weight is exactly one bit. ``freeze()`` turns a trained layer
into its inference form: ``weight`` holds the +-1 values and the buffer ``alpha`` the per-channel
scales, so the layer computes exactly what it computed before and stores in 1 bit per weight.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.engine.callbacks import Callback

MODES = ("binaryconnect", "bnn", "xnor")


class SignSTE(torch.autograd.Function):
    """sign(w) in {-1, +1} forward; identity backward (BinaryConnect's weight estimator)."""

    @staticmethod
    def forward(ctx: Any, w: torch.Tensor) -> torch.Tensor:
        return torch.where(w >= 0, 1.0, -1.0).to(w.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad


class SignActSTE(torch.autograd.Function):
    """sign(a) forward; gradient ``g * 1[|a| <= 1]`` backward (BNN's Htanh estimator)."""

    @staticmethod
    def forward(ctx: Any, a: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(a)
        return torch.where(a >= 0, 1.0, -1.0).to(a.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (a,) = ctx.saved_tensors
        return grad * (a.abs() <= 1).to(grad.dtype)


def sign_ste(w: torch.Tensor) -> torch.Tensor:
    return SignSTE.apply(w)


def sign_act_ste(a: torch.Tensor) -> torch.Tensor:
    return SignActSTE.apply(a)


def stochastic_sign_ste(w: torch.Tensor) -> torch.Tensor:
    """+1 with probability hard_sigmoid(w) = clip((w + 1) / 2, 0, 1), else -1; identity grad."""
    p = ((w.detach() + 1) / 2).clamp(0, 1)
    b = torch.where(torch.rand_like(p) < p, 1.0, -1.0).to(w.dtype)
    return w + (b - w).detach()  # value b, gradient of w: the straight-through estimator


def xnor_alpha(w: torch.Tensor) -> torch.Tensor:
    """Per-output-channel alpha = ||W_n||_1 / numel(W_n), shaped to broadcast over ``w``."""
    dims = tuple(range(1, w.dim()))
    return w.abs().mean(dim=dims, keepdim=True)


class _BinaryMixin:
    """Weight/input binarisation shared by the conv and linear forms."""

    weight: nn.Parameter

    def __init__(
        self, *args: Any, mode: str = "binaryconnect", stochastic: bool = False,
        binary_inputs: bool | None = None, **kwargs: Any,
    ) -> None:  # fmt: skip
        super().__init__(*args, **kwargs)  # the nn.Conv2d / nn.Linear that follows in the MRO
        self._init_binary(mode, stochastic, binary_inputs)

    def _init_binary(self, mode: str, stochastic: bool, binary_inputs: bool | None) -> None:
        if mode not in MODES:
            raise ValueError(f"binary mode must be one of {', '.join(MODES)}; got {mode!r}")
        self.mode = mode
        self.stochastic = bool(stochastic)
        self.binary_inputs = mode == "bnn" if binary_inputs is None else bool(binary_inputs)
        self.frozen = False
        self.register_buffer("alpha", None)  # type: ignore[attr-defined]

    def binary_weight(self) -> torch.Tensor:
        w = self.weight
        if self.frozen:
            return w * self.alpha.view(-1, *([1] * (w.dim() - 1)))
        stochastic = self.stochastic and self.training  # type: ignore[attr-defined]
        b = stochastic_sign_ste(w) if stochastic else sign_ste(w)
        return b * xnor_alpha(w) if self.mode == "xnor" else b

    def binary_input(self, x: torch.Tensor) -> torch.Tensor:
        return sign_act_ste(x) if self.binary_inputs else x

    @torch.no_grad()
    def freeze(self) -> None:
        """Store +-1 weights and per-channel alpha (1 for BinaryConnect/BNN): inference form."""
        w = self.weight
        alpha = xnor_alpha(w).reshape(-1) if self.mode == "xnor" else torch.ones(w.shape[0])
        self.alpha = alpha.to(w.device, w.dtype)
        w.copy_(torch.where(w >= 0, 1.0, -1.0))
        self.frozen = True

    def extra_repr(self) -> str:
        base = super().extra_repr()  # type: ignore[misc]  # nn.Conv2d's / nn.Linear's
        return (
            f"{base}, mode={self.mode}, stochastic={self.stochastic}, "
            f"binary_inputs={self.binary_inputs}, frozen={self.frozen}"
        )


class BinaryConv2d(_BinaryMixin, nn.Conv2d):
    """Conv2d with binarised weights (and inputs for BNN); see the module docstring."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(self.binary_input(x), self.binary_weight(), self.bias)


class BinaryLinear(_BinaryMixin, nn.Linear):
    """Linear with binarised weights (and inputs for BNN); see the module docstring."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.binary_input(x), self.binary_weight(), self.bias)


BINARY_LAYERS = (BinaryConv2d, BinaryLinear)


@torch.no_grad()
def clip_binary_weights(model: nn.Module) -> None:
    """Keep the real (shadow) weights of trainable binary layers in [-1, 1]."""
    for m in model.modules():
        if isinstance(m, BINARY_LAYERS) and not m.frozen:
            m.weight.clamp_(-1.0, 1.0)


class ClipBinaryWeights(Callback):
    """After every optimiser step, clip binary layers' real weights to [-1, 1] (BinaryConnect)."""

    def on_step_end(self, trainer: Any, state: Any) -> None:
        clip_binary_weights(getattr(trainer.model, "module", trainer.model))
