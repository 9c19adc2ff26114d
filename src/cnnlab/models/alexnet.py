"""AlexNet (Krizhevsky, Sutskever, Hinton 2012) as in Handbook Table 3.1 (§3.2.1).

ImageNet form at 227x227x3: conv11/4 96 -> act -> maxpool 3/2 -> LRN -> conv5 p2 256 -> act ->
maxpool 3/2 -> LRN -> conv3 384 -> conv3 384 -> conv3 256 (act after each) -> maxpool 3/2 ->
FC 4096 -> act -> dropout -> FC 4096 -> act -> dropout -> FC C. Maps: 55, 27, 27, 13, 13, 6.
62,378,344 params ungrouped (C=1000); ``groups=2`` splits conv2, conv4 and conv5 into two
halves like the original two-GPU model (60,965,224 params).

Small-input stem (chosen for 28/32 px images): conv1 becomes 3x3, stride 1, padding 1, and the
three overlapping 3/2 max-pools stay, so a 28 px image gives maps 28, 13, 6, 2 (32 px: 32, 15,
7, 3). Everything else is unchanged; fc6's input size follows from input_size.

``init="paper"``: weights N(0, 0.01), biases 1 in conv2, conv4, conv5, fc6 and fc7 (keeps the
ReLUs active early on) and 0 elsewhere, as in the paper (§5). ``init="torch"`` keeps torch's
defaults. ``width`` scales every conv width and the two 4096-wide FC layers.

``norm="bn"`` (not in the paper; Handbook §11.2.3) adds BatchNorm2d after each of the five
convs, before the activation (``bn_position="before"``; the conv then has no bias) or after it;
the FC layers keep dropout and no BN, as in torchvision's VGG-BN. LRN stays unless ``lrn=False``.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from cnnlab.models.base import (
    ImageClassifier,
    check_choice,
    check_common,
    check_norm,
    check_positive_int,
    check_probability,
    check_width,
    layer_bias,
    norm_act,
    resolve_stem,
    scale_width,
    too_small,
)
from cnnlab.nn.activations import check_activation, make_activation
from cnnlab.nn.dropout import Dropout
from cnnlab.nn.layers import LocalResponseNorm, conv_out_size
from cnnlab.registry import MODELS

CONV_WIDTHS = (96, 256, 384, 384, 256)
FC_WIDTH = 4096
PAPER = "Krizhevsky et al. 2012, NIPS; Handbook Table 3.1"


def _lrn() -> LocalResponseNorm:
    """The paper's LRN: k=2, n=5, alpha=1e-4, beta=0.75 in the handbook's convention."""
    return LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0)


def _final_side(input_size: int, stem: str) -> int:
    """Side of the map after pool5 (6 at 227 with the ImageNet stem)."""
    side = conv_out_size(input_size, 11, 4) if stem == "imagenet" else input_size
    for _ in range(3):  # conv2..conv5 keep the size; only the 3/2 pools shrink it
        side = conv_out_size(side, 3, 2)
    return side


def _make_features(
    in_chans: int,
    stem: str,
    activation: str,
    lrn: bool,
    groups: int,
    width: float,
    norm: str = "none",
    bn_position: str = "before",
) -> nn.Sequential:
    """conv1 .. pool5 of Table 3.1 (conv -> [BN] -> act -> pool -> LRN ordering)."""
    c1, c2, c3, c4, c5 = (scale_width(c, width, groups) for c in CONV_WIDTHS)
    bias = layer_bias(norm, bn_position)
    if stem == "imagenet":
        conv1 = nn.Conv2d(in_chans, c1, 11, stride=4, bias=bias)
    else:
        conv1 = nn.Conv2d(in_chans, c1, 3, stride=1, padding=1, bias=bias)

    def post(i: int, width: int) -> list[tuple[str, nn.Module]]:
        return [(f"{n}{i}", m) for n, m in norm_act(width, activation, norm, bn_position)]

    layers: list[tuple[str, nn.Module]] = [
        ("conv1", conv1),
        *post(1, c1),
        ("pool1", nn.MaxPool2d(3, 2)),
        *([("lrn1", _lrn())] if lrn else []),
        ("conv2", nn.Conv2d(c1, c2, 5, padding=2, groups=groups, bias=bias)),
        *post(2, c2),
        ("pool2", nn.MaxPool2d(3, 2)),
        *([("lrn2", _lrn())] if lrn else []),
        ("conv3", nn.Conv2d(c2, c3, 3, padding=1, bias=bias)),
        *post(3, c3),
        ("conv4", nn.Conv2d(c3, c4, 3, padding=1, groups=groups, bias=bias)),
        *post(4, c4),
        ("conv5", nn.Conv2d(c4, c5, 3, padding=1, groups=groups, bias=bias)),
        *post(5, c5),
        ("pool5", nn.MaxPool2d(3, 2)),
    ]
    return nn.Sequential(OrderedDict(layers))


class AlexNet(ImageClassifier):
    """AlexNet with optional LRN, two-way grouping, width scaling and a small-input stem."""

    def __init__(
        self,
        *,
        num_classes: int,
        in_chans: int,
        input_size: int,
        activation: str,
        dropout: float,
        lrn: bool,
        groups: int,
        width: float,
        stem: str,
        init: str,
        norm: str = "none",
        bn_position: str = "before",
    ) -> None:
        super().__init__(
            arch="alexnet",
            num_classes=num_classes,
            in_chans=in_chans,
            input_size=input_size,
            paper=PAPER,
            fixed_size=True,
            stem=stem,
            width=width,
            norm=norm,
        )
        side = _final_side(input_size, stem)
        if side < 1:
            need = 67 if stem == "imagenet" else 15
            raise too_small("alexnet", input_size, need, f"stem={stem!r}")
        c5 = scale_width(CONV_WIDTHS[-1], width, groups)
        fc = scale_width(FC_WIDTH, width)
        self.features = _make_features(
            in_chans, stem, activation, lrn, groups, width, norm, bn_position
        )
        self.classifier = nn.Sequential(
            OrderedDict(
                fc6=nn.Linear(c5 * side * side, fc),  # 6*6*256 = 9216 inputs at 227
                act6=make_activation(activation, channels=fc),
                drop6=Dropout(dropout),
                fc7=nn.Linear(fc, fc),
                act7=make_activation(activation, channels=fc),
                drop7=Dropout(dropout),
            )
        )
        self.head = nn.Linear(fc, num_classes)
        if init == "paper":
            self._paper_init()

    @torch.no_grad()
    def _paper_init(self) -> None:
        ones = {"conv2", "conv4", "conv5", "fc6", "fc7"}
        named = [*self.features.named_children(), *self.classifier.named_children()]
        for name, layer in [*named, ("head", self.head)]:
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                nn.init.normal_(layer.weight, std=0.01)
                if layer.bias is not None:  # no conv bias when BN follows (norm="bn")
                    nn.init.constant_(layer.bias, 1.0 if name in ones else 0.0)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        x = self.features(x).flatten(1)  # (B, C5, s, s) -> (B, C5*s*s)
        return self.classifier(x)


@MODELS.register("alexnet")
def alexnet(
    *,
    num_classes: int = 1000,
    in_chans: int = 3,
    input_size: int = 227,
    activation: str = "relu",
    dropout: float = 0.5,
    lrn: bool = True,
    groups: int = 1,
    width: float = 1.0,
    stem: str = "auto",
    init: str = "paper",
    norm: str = "none",
    bn_position: str = "before",
) -> AlexNet:
    """AlexNet (Krizhevsky et al. 2012), Handbook Table 3.1; 62,378,344 params at 227/1000.

    stem: "imagenet" (11x11/4 conv1), "small" (3x3/1 conv1 for 28/32 px) or "auto" (imagenet
    from 96 px up). groups=2 reproduces the two-GPU split of conv2/4/5. width scales conv and
    FC widths. init: "paper" (N(0, 0.01), some biases 1) or "torch" (torch defaults).
    norm: "none" or "bn" (BatchNorm after each conv); bn_position: "before" or "after" the act.
    """
    check_common(num_classes, in_chans, input_size)
    norm, bn_position = check_norm(norm, bn_position)
    check_activation(activation)
    check_positive_int("groups", groups)
    check_choice("init", init, ("paper", "torch"))
    return AlexNet(
        num_classes=num_classes,
        in_chans=in_chans,
        input_size=input_size,
        activation=activation,
        dropout=check_probability("dropout", dropout),
        lrn=bool(lrn),
        groups=groups,
        width=check_width(width),
        stem=resolve_stem(stem, input_size),
        init=init,
        norm=norm,
        bn_position=bn_position,
    )
