"""MobileNet v1 (Howard et al. 2017, arXiv:1704.04861): depthwise separable convolutions.

A depthwise separable convolution splits a standard k x k conv (M -> N channels) into a k x k
*depthwise* conv (one filter per input channel, ``groups=M``) and a 1x1 *pointwise* conv (M -> N).
Each is followed by BatchNorm and ReLU (paper Fig. 3). Cost per output position drops from
``k² M N`` to ``k² M + M N`` multiply-adds, a factor ``1/N + 1/k²`` (about 8-9x less for 3x3).

Table 1 of the paper at 3x224x224 (s = stride of the depthwise conv; pointwise convs are s1):

    conv 3x3/2 32 (112) -> dw/1 pw 64 -> dw/2 pw 128 (56) -> dw/1 pw 128 -> dw/2 pw 256 (28)
    -> dw/1 pw 256 -> dw/2 pw 512 (14) -> 5 x (dw/1 pw 512) -> dw/2 pw 1024 (7)
    -> dw pw 1024 -> avg-pool 7x7 -> FC C -> softmax

The table prints "s2" for the last depthwise conv although its input and output are both 7x7: it
is stride 1 here (as in the authors' released model). Convs have no bias (BN follows); the FC
layer has one. Parameters at 224 / 1000 classes / alpha = 1: 3,185,088 conv weights + 21,888 BN
(gamma, beta) + 1,025,000 FC = 4,231,976 (paper: 4.2 M); 567,716,352 multiply-adds in the convs
+ 1,024,000 in the FC = 568,740,352 (paper: 569 M).

``alpha`` is the paper's width multiplier (every layer's channels x alpha; Table 6: 1.0, 0.75,
0.5, 0.25). The resolution multiplier rho is simply the input size: build with ``input_size``
224, 192, 160 or 128 (Table 7) and feed images of that size; the net is fully convolutional up to
the global average pool, so the weights do not change.

Init (not in the paper): He normal (fan_in) convs, BN weight 1 / bias 0, FC N(0, 0.01).

Small-input stem (``stem="small"``, chosen by "auto" below 96 px): the first conv has stride 1,
so 32 px images end at 2x2 maps (28 px: 28 -> 14 -> 7 -> 4 -> 2) instead of collapsing to 1x1.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from cnnlab.models.base import (
    ImageClassifier,
    check_common,
    check_probability,
    resolve_stem,
    scale_width,
)
from cnnlab.nn.activations import check_activation
from cnnlab.nn.dropout import Dropout
from cnnlab.nn.layers import ConvBNAct
from cnnlab.registry import MODELS

PAPER = "Howard et al. 2017, MobileNets (arXiv:1704.04861), Table 1; seed 002"
#: (pointwise output channels, depthwise stride) for the 13 separable layers of Table 1.
LAYERS: tuple[tuple[int, int], ...] = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
)
STEM_WIDTH = 32


def check_alpha(alpha: object) -> float:
    """``alpha`` if it is a positive number (the width multiplier), else a ValueError."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or alpha <= 0:
        raise ValueError(f"alpha (width multiplier) must be a positive number, got {alpha!r}")
    return float(alpha)


class DepthwiseSeparable(nn.Sequential):
    """3x3 depthwise conv (groups = channels) -> BN -> act -> 1x1 pointwise conv -> BN -> act."""

    def __init__(self, in_chans: int, out_chans: int, stride: int, *, activation: str) -> None:
        super().__init__(
            OrderedDict(
                dw=ConvBNAct(in_chans, in_chans, 3, stride, groups=in_chans, activation=activation),
                pw=ConvBNAct(in_chans, out_chans, 1, activation=activation),
            )
        )


class MobileNetV1(ImageClassifier):
    """Standard 3x3 conv, 13 depthwise separable layers, global average pooling, FC head."""

    def __init__(
        self,
        *,
        num_classes: int,
        in_chans: int,
        input_size: int,
        activation: str,
        alpha: float,
        stem: str,
        dropout: float,
    ) -> None:
        super().__init__(
            arch="mobilenet_v1",
            num_classes=num_classes,
            in_chans=in_chans,
            input_size=input_size,
            paper=PAPER,
            fixed_size=False,
            stem=stem,
            alpha=alpha,
        )
        chans = scale_width(STEM_WIDTH, alpha)
        first_stride = 2 if stem == "imagenet" else 1
        layers: OrderedDict[str, nn.Module] = OrderedDict(
            conv1=ConvBNAct(in_chans, chans, 3, first_stride, activation=activation)
        )
        for i, (width, stride) in enumerate(LAYERS):
            out = scale_width(width, alpha)
            layers[f"sep{i + 1}"] = DepthwiseSeparable(chans, out, stride, activation=activation)
            chans = out
        self.features = nn.Sequential(layers)
        self.pool = nn.AdaptiveAvgPool2d(1)  # the 7x7 average pool at 224 px
        self.drop = Dropout(dropout)
        self.head = nn.Linear(chans, num_classes)
        self._init()

    @torch.no_grad()
    def _init(self) -> None:
        """He normal convs, BN 1/0, FC N(0, 0.01) (the paper gives no init). fan_in, because
        torch's fan_out ignores groups and would shrink each depthwise filter by sqrt(C)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.head.weight, std=0.01)
        nn.init.zeros_(self.head.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.drop(self.pool(self.features(x)).flatten(1))  # (B, 1024, 7, 7) -> (B, 1024)


@MODELS.register("mobilenet_v1")
def mobilenet_v1(
    *,
    num_classes: int = 1000,
    in_chans: int = 3,
    input_size: int = 224,
    activation: str = "relu",
    alpha: float = 1.0,
    stem: str = "auto",
    dropout: float = 0.0,
) -> MobileNetV1:
    """MobileNet v1 (Howard et al. 2017), Table 1; 4,231,976 params, 568.7 M MACs at 224/1000.

    alpha: width multiplier (1.0, 0.75, 0.5, 0.25 in the paper). Resolution multiplier: choose
    input_size (224, 192, 160, 128). stem: "imagenet" (first conv stride 2), "small" (stride 1,
    for 28/32 px) or "auto" (imagenet from 96 px up). dropout before the FC head (0 = paper).
    """
    check_common(num_classes, in_chans, input_size)
    check_activation(activation)
    return MobileNetV1(
        num_classes=num_classes,
        in_chans=in_chans,
        input_size=input_size,
        activation=activation,
        alpha=check_alpha(alpha),
        stem=resolve_stem(stem, input_size),
        dropout=check_probability("dropout", dropout),
    )
