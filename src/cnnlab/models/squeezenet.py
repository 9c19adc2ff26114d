"""SqueezeNet v1.0 (Iandola et al. 2016, arXiv:1602.07360; Handbook §4.6): Fire modules.

A Fire module *squeezes* with s 1x1 convs, then *expands* with e1 1x1 convs and e3 3x3 convs
(padding 1) side by side and concatenates the two, each conv followed by the activation. With
s < e1 + e3 the 3x3 convs see only s channels, which is where the parameters are saved (paper
§3.1 strategies 1 and 2; Handbook §4.6).

Paper Table 1 (squeeze / expand1x1 / expand3x3 per Fire module):

    conv1 7x7/2 96 -> max-pool 3x3/2 -> fire2 16/64/64 -> fire3 16/64/64 -> fire4 32/128/128
    -> max-pool 3x3/2 -> fire5 32/128/128 -> fire6 48/192/192 -> fire7 48/192/192
    -> fire8 64/256/256 -> max-pool 3x3/2 -> fire9 64/256/256 -> dropout 50% -> conv10 1x1 C
    -> global average pool

No fully connected layer: conv10 (+ activation) gives one map per class and the average pool
turns them into scores. Pools round up (Caffe). The table's map sizes 111 -> 55 -> 27 -> 13 are
those of a 227 px input (the released model's crop; 224 px gives 109 -> 54 -> 27 -> 13), so
227 is the default. 1,248,424 parameters with 1000 classes.

``classifier="conv"`` (default, the paper) keeps conv10 + activation before the pool and uses
``head = nn.Identity()``; ``classifier="linear"`` turns conv10 (without its activation) into a
``Linear(512, C)`` head after the pool (GAP and a 1x1 conv commute), see ``cnnlab.models.nin``.

Small-input stem (``stem="small"``, chosen by "auto" below 96 px): conv1 is 3x3/1 (pad 1), so a
32 px image gives maps 32 -> 16 -> 8 -> 4 (28 px: 28 -> 14 -> 7 -> 4) instead of vanishing.
Init (as the paper's released Caffe model): conv10 N(0, 0.01), other convs Xavier-uniform,
biases 0.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from cnnlab.models.base import (
    check_choice,
    check_common,
    check_probability,
    resolve_stem,
    too_small,
)
from cnnlab.models.nin import CLASSIFIERS, ClassMapClassifier
from cnnlab.nn.activations import check_activation, make_activation
from cnnlab.nn.dropout import Dropout
from cnnlab.nn.layers import conv_out_size
from cnnlab.registry import MODELS

PAPER = "Iandola et al. 2016, SqueezeNet (arXiv:1602.07360), Table 1; Handbook §4.6"
M = "M"  # a 3x3/2 max-pool
#: Fire modules (squeeze, expand1x1, expand3x3) and pools after conv1, in order.
LAYOUT: tuple[tuple[int, int, int] | str, ...] = (
    M,
    (16, 64, 64),
    (16, 64, 64),
    (32, 128, 128),
    M,
    (32, 128, 128),
    (48, 192, 192),
    (48, 192, 192),
    (64, 256, 256),
    M,
    (64, 256, 256),
)


class Fire(nn.Module):
    """Squeeze 1x1 -> act, then expand 1x1 and expand 3x3 (each -> act), concatenated."""

    def __init__(
        self, in_chans: int, squeeze: int, expand1x1: int, expand3x3: int, *, activation: str
    ) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(in_chans, squeeze, 1)
        self.squeeze_act = make_activation(activation)
        self.expand1x1 = nn.Conv2d(squeeze, expand1x1, 1)
        self.expand1x1_act = make_activation(activation)
        self.expand3x3 = nn.Conv2d(squeeze, expand3x3, 3, padding=1)
        self.expand3x3_act = make_activation(activation)
        self.out_chans = expand1x1 + expand3x3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze_act(self.squeeze(x))
        a = self.expand1x1_act(self.expand1x1(x))
        b = self.expand3x3_act(self.expand3x3(x))
        return torch.cat([a, b], dim=1)  # (B, e1 + e3, H, W)


class SqueezeNet(ClassMapClassifier):
    """conv1, Fire modules with three max-pools, dropout, conv10 class maps, global avg pool."""

    def __init__(
        self,
        *,
        num_classes: int,
        in_chans: int,
        input_size: int,
        activation: str,
        stem: str,
        dropout: float,
        classifier: str,
    ) -> None:
        super().__init__(
            arch="squeezenet1_0",
            num_classes=num_classes,
            in_chans=in_chans,
            input_size=input_size,
            paper=PAPER,
            fixed_size=False,
            stem=stem,
            classifier=classifier,
        )
        self.classifier_kind = classifier
        self.class_conv_path = ("features", "conv10")
        if stem == "imagenet":
            conv1 = nn.Conv2d(in_chans, 96, 7, 2)
        else:
            conv1 = nn.Conv2d(in_chans, 96, 3, 1, 1)
        layers: OrderedDict[str, nn.Module] = OrderedDict(
            conv1=conv1, act1=make_activation(activation)
        )
        chans, index = 96, 1
        for item in LAYOUT:
            if item == M:
                layers[f"pool{index}"] = nn.MaxPool2d(3, 2, ceil_mode=True)
                continue
            index += 1
            fire = Fire(chans, *item, activation=activation)  # type: ignore[misc]
            layers[f"fire{index}"] = fire
            chans = fire.out_chans
        layers["drop9"] = Dropout(dropout)
        if classifier == "conv":
            layers["conv10"] = nn.Conv2d(chans, num_classes, 1)
            layers["act10"] = make_activation(activation)
        self.features = nn.Sequential(layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Identity() if classifier == "conv" else nn.Linear(chans, num_classes)
        self._init()

    @torch.no_grad()
    def _init(self) -> None:
        for name, m in self.named_modules():
            if isinstance(m, nn.Conv2d):
                if name.endswith("conv10"):
                    nn.init.normal_(m.weight, std=0.01)
                else:
                    nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)


def final_side(input_size: int, stem: str) -> int:
    """Side of fire9's maps (13 at 227 px with the ImageNet stem)."""
    side = conv_out_size(input_size, 7, 2) if stem == "imagenet" else input_size
    for _ in range(3):
        side = conv_out_size(side, 3, 2, ceil_mode=True)
    return side


@MODELS.register("squeezenet1_0")
def squeezenet1_0(
    *,
    num_classes: int = 1000,
    in_chans: int = 3,
    input_size: int = 227,
    activation: str = "relu",
    stem: str = "auto",
    dropout: float = 0.5,
    classifier: str = "conv",
) -> SqueezeNet:
    """SqueezeNet v1.0 (Iandola et al. 2016), Fire modules; 1,248,424 params at 1000 classes.

    stem: "imagenet" (7x7/2 conv1), "small" (3x3/1 conv1 for 28/32 px) or "auto" (imagenet
    from 96 px up). classifier: "conv" (paper: conv10 + activation, GAP, identity head) or
    "linear" (conv10 as a Linear head after GAP).
    """
    check_common(num_classes, in_chans, input_size)
    check_activation(activation)
    check_choice("classifier", classifier, CLASSIFIERS)
    stem = resolve_stem(stem, input_size)
    if final_side(input_size, stem) < 1:
        need = next(n for n in range(1, 256) if final_side(n, stem) >= 1)
        raise too_small("squeezenet1_0", input_size, need, f"stem={stem!r}")
    return SqueezeNet(
        num_classes=num_classes,
        in_chans=in_chans,
        input_size=input_size,
        activation=activation,
        stem=stem,
        dropout=check_probability("dropout", dropout),
        classifier=classifier,
    )
