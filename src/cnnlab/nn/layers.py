"""Small reusable layers: LRN, conv-BN-activation, option-A shortcut, FC-to-conv conversion.

Everything here is general; family-specific pieces live next to their model (e.g. LeNet's
subsampling layer in ``cnnlab.models.lenet``).
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.nn.activations import make_activation


def conv_out_size(
    size: int,
    kernel: int,
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
    ceil_mode: bool = False,
) -> int:
    """Output side of a conv or pooling window: floor((n + 2p - f_eff) / s) + 1 (Handbook §2.3.1).

    ``f_eff = d * (f - 1) + 1`` for dilation d. With ``ceil_mode`` the division rounds up, but
    (as in torch) the last window must start inside the input or the left padding.
    """
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    if span < 0:
        return 0
    out = (math.ceil(span / stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


class LocalResponseNorm(nn.Module):
    """Local response normalisation across channels in the handbook's convention (Handbook §3.2.1).

    ``b_d = a_d / (k + alpha * sum_t a_t^2) ** beta`` where t runs over
    ``max(0, d - n//2) .. min(N-1, d + n//2)`` (eq. 3.1): alpha is *not* divided by n and the
    window is symmetric, so an even n covers n + 1 channels. ``alpha_over_n=True`` divides alpha
    by n, which for odd n is exactly torch's / Caffe's ``nn.LocalResponseNorm``.
    Accepts ``(B, C, *)`` inputs.
    """

    def __init__(
        self,
        size: int = 5,
        alpha: float = 1e-4,
        beta: float = 0.75,
        k: float = 2.0,
        alpha_over_n: bool = False,
    ) -> None:
        super().__init__()
        if int(size) != size or size < 1:
            raise ValueError(f"LocalResponseNorm size must be a positive integer, got {size!r}")
        self.size = int(size)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.k = float(k)
        self.alpha_over_n = bool(alpha_over_n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 3:
            raise ValueError(f"LocalResponseNorm expects (B, C, ...) input, got {tuple(x.shape)}")
        b, c = x.shape[:2]
        half = self.size // 2
        window = 2 * half + 1
        # (B, C, *) -> (B, 1, C, L): pool over the channel axis with a (window, 1) kernel.
        sq = x.pow(2).reshape(b, 1, c, -1)
        sq = F.pad(sq, (0, 0, half, half))  # zero channels beyond the edges add nothing
        sums = F.avg_pool2d(sq, (window, 1), stride=1) * window
        alpha = self.alpha / self.size if self.alpha_over_n else self.alpha
        denom = (self.k + alpha * sums.reshape(x.shape)).pow(self.beta)
        return x / denom

    def extra_repr(self) -> str:
        return (
            f"size={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}, "
            f"alpha_over_n={self.alpha_over_n}"
        )


class ConvBNAct(nn.Sequential):
    """Conv2d -> optional BatchNorm2d -> optional activation (Handbook §2.3, §11.2.3).

    ``padding=None`` keeps the size at stride 1 (p = (f-1)/2, Handbook §11.1.2). The conv has no
    bias when BN follows, since BN's shift makes it redundant.
    """

    def __init__(
        self,
        in_chans: int,
        out_chans: int,
        kernel_size: int,
        stride: int = 1,
        padding: int | None = None,
        *,
        groups: int = 1,
        batch_norm: bool = True,
        activation: str | None = "relu",
    ) -> None:
        pad = (kernel_size - 1) // 2 if padding is None else padding
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        layers["conv"] = nn.Conv2d(
            in_chans, out_chans, kernel_size, stride, pad, groups=groups, bias=not batch_norm
        )
        if batch_norm:
            layers["bn"] = nn.BatchNorm2d(out_chans)
        if activation is not None:
            layers["act"] = make_activation(activation)
        super().__init__(layers)


class ShortcutA(nn.Module):
    """Parameter-free "option A" shortcut: subsample by the stride, zero-pad the new channels.

    He et al. 2016 §4.2 (CIFAR nets): identity mapping where shapes match, otherwise take every
    stride-th pixel and append ``out_chans - in_chans`` all-zero channels.
    """

    def __init__(self, in_chans: int, out_chans: int, stride: int = 1) -> None:
        super().__init__()
        if out_chans < in_chans:
            raise ValueError(f"option-A shortcut cannot shrink channels ({in_chans}->{out_chans})")
        self.extra = out_chans - in_chans
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.extra:
            x = F.pad(x, (0, 0, 0, 0, 0, self.extra))  # (B, C, H, W) -> (B, C+extra, H, W)
        return x

    def extra_repr(self) -> str:
        return f"stride={self.stride}, zero_channels={self.extra}"


def linear_to_conv(linear: nn.Linear, in_shape: int | tuple[int, int, int]) -> nn.Conv2d:
    """The convolution equal to ``linear`` applied to a flattened (C, H, W) map (Handbook §2.6).

    An FC layer after a conv map is a conv with an H x W kernel; after another FC layer
    (``in_shape`` an int, or (C, 1, 1)) it is a 1 x 1 conv. Weights are copied, so
    ``conv(x).flatten(1) == linear(x.flatten(1))``.
    """
    shape = (in_shape, 1, 1) if isinstance(in_shape, int) else tuple(in_shape)
    if len(shape) != 3:
        raise ValueError(f"in_shape must be C or (C, H, W), got {in_shape!r}")
    c, h, w = shape
    if c * h * w != linear.in_features:
        raise ValueError(
            f"in_shape {shape} holds {c * h * w} values but the Linear expects "
            f"{linear.in_features} inputs"
        )
    conv = nn.utils.skip_init(  # no random init: every weight is overwritten below
        nn.Conv2d,
        c,
        linear.out_features,
        (h, w),
        bias=linear.bias is not None,
        device=linear.weight.device,
        dtype=linear.weight.dtype,
    )
    with torch.no_grad():
        # (out, C*H*W) -> (out, C, H, W): the row-major flatten order of an NCHW map.
        conv.weight.copy_(linear.weight.reshape(linear.out_features, c, h, w))
        if linear.bias is not None:
            conv.bias.copy_(linear.bias)
    return conv
