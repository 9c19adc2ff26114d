"""Activation functions by name: the ``ACTIVATIONS`` registry (Handbook §2.5, chapter 8).

Models take ``activation: str`` and call :func:`make_activation` once per place an activation
sits, passing the width of the layer it follows (``channels``), so a parametric activation
(PReLU, Maxout) gets its own parameters at every site, one set per channel where it wants them.
Activations that have no per-channel parameters ignore ``channels``.
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


#: Sharpness of the softplus curve whose tangents give Maxout's initial pieces (k > 2).
MAXOUT_INIT_SHARPNESS = 4.0


class ChannelMaxout(nn.Module):
    """Channel-preserving maxout: ``out_c = max_j (a_cj * x_c + b_cj)``, j = 1..k.

    Goodfellow et al. (2013) take the max over k affine maps of the whole input, which multiplies
    the preceding layer's width by k. This is the channel-preserving form: each channel c (or all
    channels together when ``channels`` is None) has its own k pieces (slope a_cj, offset b_cj),
    applied to that channel alone, so Maxout drops into any model without changing layer widths.
    It is a learned convex piecewise-linear function per channel; ReLU, leaky ReLU and PReLU are
    special cases with k = 2.

    Init (so training starts from ReLU-like behaviour): the slopes are spread evenly over [0, 1]
    and piece j is the tangent of a softplus of sharpness beta = 4 with slope a_j, so
    ``b_j = H(a_j) / beta`` with ``H(a) = -a ln a - (1 - a) ln(1 - a)``. For k = 2 that is exactly
    ``max(0, x)`` = ReLU; for larger k it is a smooth ReLU within ln(2)/4 ~ 0.17 in which every
    piece is the maximum on some interval (so every piece receives gradient).

    Input ``(B, C, *)``; ``channels`` must equal C when given.
    """

    def __init__(self, channels: int | None = None, k: int = 2) -> None:
        super().__init__()
        self.channels, self.k = channels, k
        slopes = torch.linspace(0.0, 1.0, k)
        entropy = torch.special.entr(slopes) + torch.special.entr(1 - slopes)  # H(a), nats
        rows = channels or 1
        self.weight = nn.Parameter(slopes.repeat(rows, 1))  # (C or 1, k) slopes a
        self.bias = nn.Parameter((entropy / MAXOUT_INIT_SHARPNESS).repeat(rows, 1))  # offsets b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels is not None:
            if x.dim() < 2 or x.shape[1] != self.channels:
                raise ValueError(
                    f"maxout was built for {self.channels} channels but got input of shape "
                    f"{tuple(x.shape)} (expected (B, {self.channels}, ...))"
                )
            # (C,) -> (C, 1, ..., 1) so a per-channel value broadcasts over (B, C, *spatial).
            shape: tuple[int, ...] = (-1, *([1] * (x.dim() - 2)))
        else:
            shape = (1,)
        out = x * self.weight[:, 0].view(shape) + self.bias[:, 0].view(shape)
        for j in range(1, self.k):
            out = torch.maximum(
                out, x * self.weight[:, j].view(shape) + self.bias[:, j].view(shape)
            )
        return out

    def extra_repr(self) -> str:
        return f"channels={self.channels}, k={self.k}"


def _check_channels(channels: int | None, name: str) -> None:
    if channels is not None and (
        isinstance(channels, bool) or not isinstance(channels, int) or channels < 1
    ):
        raise ValueError(f"{name}: channels must be a positive integer or None, got {channels!r}")


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


@ACTIVATIONS.register("gelu")
def gelu(*, approximate: str = "none") -> nn.Module:
    """Gaussian error linear unit x * Phi(x) (Hendrycks & Gimpel 2016); airbench's activation."""
    return nn.GELU(approximate=approximate)


@ACTIVATIONS.register("prelu")
def prelu(*, channels: int | None = None, init: float = 0.25) -> nn.Module:
    """Parametric ReLU, channel-wise learned slope for x < 0, init 0.25 (Handbook §8.5).

    One slope per channel of the layer it follows (``channels``, passed by the model); a single
    shared slope when ``channels`` is None. Init 0.25 as in He et al. 2015 (Handbook E.4 item 36).
    """
    _check_channels(channels, "prelu")
    return nn.PReLU(num_parameters=channels or 1, init=init)


@ACTIVATIONS.register("prelu_shared")
def prelu_shared(*, init: float = 0.25) -> nn.Module:
    """Parametric ReLU with one slope shared by all channels, init 0.25 (Handbook §8.5)."""
    return nn.PReLU(num_parameters=1, init=init)


@ACTIVATIONS.register("rrelu")
def rrelu(*, lower: float = 1.0 / 8.0, upper: float = 1.0 / 3.0) -> nn.Module:
    """Randomized ReLU: slope ~ U(1/8, 1/3) per element in training, (l+u)/2 in eval (§8.6).

    Defaults from Xu et al. 2015 (divisor a ~ U(3, 8); Handbook E.4 item 37). A fresh slope is
    drawn for every element at every training forward pass; eval mode uses the mean slope.
    """
    if not (0.0 <= lower < upper <= 1.0):
        raise ValueError(
            f"rrelu: lower and upper must satisfy 0 <= lower < upper <= 1 (Handbook eq. 8.7), "
            f"got lower={lower}, upper={upper}"
        )
    return nn.RReLU(lower=lower, upper=upper)


@ACTIVATIONS.register("maxout")
def maxout(*, channels: int | None = None, k: int = 2) -> nn.Module:
    """Channel-wise maxout max_j(a_j x + b_j), k=2 learned pieces, starts as ReLU (Goodfellow 2013).

    The channel-preserving form of Goodfellow et al. 2013 (see :class:`ChannelMaxout`): one set
    of k pieces per channel when ``channels`` is given, otherwise one shared set.
    """
    _check_channels(channels, "maxout")
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise ValueError(f"maxout: k (number of pieces) must be an integer >= 2, got {k!r}")
    return ChannelMaxout(channels=channels, k=k)


@ACTIVATIONS.register("lecun_tanh")
def lecun_tanh() -> nn.Module:
    """Scaled tanh 1.7159*tanh(2x/3) of LeNet-5 (LeCun et al. 1998, appendix A)."""
    return ScaledTanh()


def make_activation(name: str, channels: int | None = None, **kwargs: Any) -> nn.Module:
    """A fresh activation module registered as ``name`` (unknown names list close matches).

    ``channels`` is the width of the layer the activation follows (conv out_channels or linear
    out_features). It is passed on only to activations that take it (``prelu``, ``maxout``) and
    ignored by the others.
    """
    if not isinstance(name, str):
        raise RegistryError(f"activation must be a name (str), got {type(name).__name__}: {name!r}")
    if channels is not None and "channels" in ACTIVATIONS.parameters(name):
        kwargs["channels"] = channels
    return ACTIVATIONS.build(name, **kwargs)


def check_activation(name: str) -> str:
    """Return ``name`` if it is a registered activation, else raise a registry error."""
    make_activation(name)
    return name


# Activations that are non-decreasing with their default options, so they commute with max
# pooling: act(max(a, b)) == max(act(a), act(b)). Models use this to pool first. PReLU and
# Maxout may learn a negative or decreasing piece, and RReLU draws a different slope for every
# element in training, so none of them commutes with pooling.
MONOTONE = frozenset({"relu", "tanh", "sigmoid", "leaky_relu", "elu", "lecun_tanh"})


def is_monotone(name: str) -> bool:
    """True if activation ``name`` is non-decreasing (PReLU may learn a negative slope)."""
    return name in MONOTONE
