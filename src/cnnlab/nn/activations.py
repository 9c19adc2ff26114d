"""Activation functions by name: the ``ACTIVATIONS`` registry (Handbook §2.5, chapter 8).

Models take ``activation: str`` and call :func:`make_activation` once per place an activation
sits, so a parametric activation (PReLU) gets its own parameters at every site.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cnnlab.registry import Registry, RegistryError

ACTIVATIONS = Registry("activation")


class ScaledTanh(nn.Module):
    """LeCun's squashing function ``A * tanh(S * x)`` with A=1.7159, S=2/3 (LeCun et al. 1998).

    With these constants f(1) = 1 and f(-1) = -1, and the gain is largest around |x| = 1.
    """

    def __init__(self, amplitude: float = 1.7159, slope: float = 2.0 / 3.0) -> None:
        super().__init__()
        self.amplitude = amplitude
        self.slope = slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.amplitude * torch.tanh(self.slope * x)

    def extra_repr(self) -> str:
        return f"amplitude={self.amplitude}, slope={self.slope:.4f}"


@ACTIVATIONS.register("relu")
def relu(*, inplace: bool = False) -> nn.Module:
    """ReLU, max(0, x) (Handbook §2.5, §8.3)."""
    return nn.ReLU(inplace=inplace)


@ACTIVATIONS.register("tanh")
def tanh() -> nn.Module:
    """Hyperbolic tangent, 2*sigmoid(2x) - 1 (Handbook §8.2)."""
    return nn.Tanh()


@ACTIVATIONS.register("sigmoid")
def sigmoid() -> nn.Module:
    """Logistic sigmoid 1 / (1 + exp(-x)) (Handbook §2.5, §8.1)."""
    return nn.Sigmoid()


@ACTIVATIONS.register("leaky_relu")
def leaky_relu(*, negative_slope: float = 0.01, inplace: bool = False) -> nn.Module:
    """Leaky ReLU with a fixed small slope for x < 0 (Handbook §8.4)."""
    return nn.LeakyReLU(negative_slope=negative_slope, inplace=inplace)


@ACTIVATIONS.register("elu")
def elu(*, alpha: float = 1.0, inplace: bool = False) -> nn.Module:
    """Exponential linear unit (Handbook §8.7)."""
    return nn.ELU(alpha=alpha, inplace=inplace)


@ACTIVATIONS.register("prelu")
def prelu(*, num_parameters: int = 1, init: float = 0.25) -> nn.Module:
    """Parametric ReLU with a learned negative slope, 0.25 at start (Handbook §8.5)."""
    return nn.PReLU(num_parameters=num_parameters, init=init)


@ACTIVATIONS.register("lecun_tanh")
def lecun_tanh() -> nn.Module:
    """Scaled tanh 1.7159*tanh(2x/3) of LeNet-5 (LeCun et al. 1998, appendix A)."""
    return ScaledTanh()


def make_activation(name: str, **kwargs: Any) -> nn.Module:
    """A fresh activation module registered as ``name`` (unknown names list close matches)."""
    if not isinstance(name, str):
        raise RegistryError(f"activation must be a name (str), got {type(name).__name__}: {name!r}")
    return ACTIVATIONS.build(name, **kwargs)


def check_activation(name: str) -> str:
    """Return ``name`` if it is a registered activation, else raise a registry error."""
    make_activation(name)
    return name


# Activations that are non-decreasing with their default options, so they commute with max
# pooling: act(max(a, b)) == max(act(a), act(b)). Models use this to pool first.
MONOTONE = frozenset({"relu", "tanh", "sigmoid", "leaky_relu", "elu", "lecun_tanh"})


def is_monotone(name: str) -> bool:
    """True if activation ``name`` is non-decreasing (PReLU may learn a negative slope)."""
    return name in MONOTONE
