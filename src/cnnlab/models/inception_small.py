"""Inception-v3 style factorised modules and a compact net for 28/32 px images.

Szegedy, Vanhoucke, Ioffe, Shlens, Wojna 2016, CVPR ("Rethinking the Inception Architecture"):
§3.1 replaces a 5x5 conv by two stacked 3x3 convs (Fig. 5) and §3.2 factorises an n x n conv
into a 1 x n conv followed by an n x 1 conv (Fig. 6). For n = 3 with C channels in and out the
pair has 3C² + 3C² = 6C² weights instead of 9C², 33% fewer (seed 002: "参数降低33%"), and still
sees a 3x3 window. Every conv is conv -> BatchNorm -> activation, as in v3.

``FactorizedInception`` has the four branches of an Inception module:

    1x1 | 1x1 reduce -> [1x3, 3x1] | 1x1 reduce -> [1x3, 3x1] -> [1x3, 3x1] | 3x3/1 avg-pool -> 1x1

(the third branch is the "5x5" branch: two factorised 3x3 convs, a 5x5 receptive field).

``inception_small`` (not from a paper; sized for Fashion-MNIST / CIFAR): conv 3x3 64, two
modules at full resolution, 3x3/2 max-pool, two modules, 3x3/2 max-pool, one module, global
average pooling, dropout, linear head; 28 px -> 28/14/7 maps, 32 px -> 32/16/8.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from cnnlab.models.base import (
    ImageClassifier,
    check_common,
    check_probability,
    check_width,
    scale_width,
    too_small,
)
from cnnlab.nn.activations import check_activation, make_activation
from cnnlab.nn.dropout import Dropout
from cnnlab.nn.layers import ConvBNAct, conv_out_size
from cnnlab.registry import MODELS

PAPER = "Szegedy et al. 2016, CVPR (Rethinking the Inception Architecture), §3.1-3.2"
#: Module widths (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj); "M" = 3x3/2 max-pool.
LAYOUT: tuple[tuple[int, int, int, int, int, int] | str, ...] = (
    (32, 32, 48, 16, 24, 24),
    (48, 48, 64, 16, 32, 32),
    "M",
    (64, 64, 96, 24, 48, 48),
    (96, 96, 128, 32, 64, 64),
    "M",
    (128, 128, 192, 48, 96, 96),
)
STEM_WIDTH = 64


def conv_bn_act(cin: int, cout: int, kernel: tuple[int, int], activation: str) -> nn.Sequential:
    """Conv (no bias, "same" padding) -> BatchNorm -> activation, for non-square kernels."""
    pad = ((kernel[0] - 1) // 2, (kernel[1] - 1) // 2)
    return nn.Sequential(
        OrderedDict(
            conv=nn.Conv2d(cin, cout, kernel, padding=pad, bias=False),
            bn=nn.BatchNorm2d(cout),
            act=make_activation(activation),
        )
    )


class FactorizedConv(nn.Sequential):
    """An n x n conv factorised as 1 x n then n x 1 (Szegedy et al. 2016 §3.2, Fig. 6)."""

    def __init__(self, in_chans: int, out_chans: int, n: int = 3, *, activation: str) -> None:
        super().__init__(
            OrderedDict(
                row=conv_bn_act(in_chans, out_chans, (1, n), activation),
                col=conv_bn_act(out_chans, out_chans, (n, 1), activation),
            )
        )


class FactorizedInception(nn.Module):
    """Inception module with 3x3 convs factorised into 1x3 + 3x1 (v3 style), branches
    concatenated along channels."""

    def __init__(
        self, in_chans: int, widths: tuple[int, int, int, int, int, int], *, activation: str
    ) -> None:
        super().__init__()
        c1, c3r, c3, c5r, c5, proj = widths
        act = {"activation": activation}
        self.branch1 = ConvBNAct(in_chans, c1, 1, **act)
        self.branch2 = nn.Sequential(
            OrderedDict(
                reduce=ConvBNAct(in_chans, c3r, 1, **act), conv=FactorizedConv(c3r, c3, **act)
            )
        )
        self.branch3 = nn.Sequential(
            OrderedDict(
                reduce=ConvBNAct(in_chans, c5r, 1, **act),
                conv1=FactorizedConv(c5r, c5, **act),
                conv2=FactorizedConv(c5, c5, **act),
            )
        )
        self.branch4 = nn.Sequential(
            OrderedDict(
                pool=nn.AvgPool2d(3, 1, padding=1, count_include_pad=False),
                proj=ConvBNAct(in_chans, proj, 1, **act),
            )
        )
        self.out_chans = c1 + c3 + c5 + proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (self.branch1, self.branch2, self.branch3, self.branch4)
        return torch.cat([b(x) for b in branches], dim=1)  # (B, c1 + c3 + c5 + proj, H, W)


class InceptionSmall(ImageClassifier):
    """Stem conv, factorised Inception modules in three resolutions, GAP, dropout, linear."""

    def __init__(
        self,
        *,
        num_classes: int,
        in_chans: int,
        input_size: int,
        activation: str,
        dropout: float,
        width: float,
    ) -> None:
        super().__init__(
            arch="inception_small",
            num_classes=num_classes,
            in_chans=in_chans,
            input_size=input_size,
            paper=PAPER,
            fixed_size=False,
            width=width,
        )
        chans = scale_width(STEM_WIDTH, width)
        layers: OrderedDict[str, nn.Module] = OrderedDict(
            stem=ConvBNAct(in_chans, chans, 3, activation=activation)
        )
        n_mod = n_pool = 0
        for item in LAYOUT:
            if item == "M":
                n_pool += 1
                layers[f"pool{n_pool}"] = nn.MaxPool2d(3, 2, ceil_mode=True)
                continue
            n_mod += 1
            widths = tuple(scale_width(w, width) for w in item)
            module = FactorizedInception(chans, widths, activation=activation)  # type: ignore[arg-type]
            layers[f"mixed{n_mod}"] = module
            chans = module.out_chans
        self.features = nn.Sequential(layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = Dropout(dropout)
        self.head = nn.Linear(chans, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.drop(self.pool(self.features(x)).flatten(1))  # (B, C, h, w) -> (B, C)


@MODELS.register("inception_small")
def inception_small(
    *,
    num_classes: int = 10,
    in_chans: int = 1,
    input_size: int = 28,
    activation: str = "relu",
    dropout: float = 0.2,
    width: float = 1.0,
) -> InceptionSmall:
    """Compact net of Inception-v3 style factorised modules (1x3 + 3x1 convs) for 28/32 px.

    Five modules at three resolutions (28/14/7 for 28 px), BN after every conv, GAP, linear
    head. width scales every conv width.
    """
    check_common(num_classes, in_chans, input_size)
    check_activation(activation)
    side = conv_out_size(conv_out_size(input_size, 3, 2, ceil_mode=True), 3, 2, ceil_mode=True)
    if side < 1:
        raise too_small("inception_small", input_size, 6)
    return InceptionSmall(
        num_classes=num_classes,
        in_chans=in_chans,
        input_size=input_size,
        activation=activation,
        dropout=check_probability("dropout", dropout),
        width=check_width(width),
    )
