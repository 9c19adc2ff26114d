"""Residual networks (He, Zhang, Ren, Sun 2016, CVPR; Handbook §3.2.4).

ImageNet family ``resnet18/34/50/101/152``: 7x7/2 conv 64 + BN + act, 3x3/2 max-pool, four
stages (widths 64/128/256/512, stride 2 at the start of stages 2-4) of basic blocks (two 3x3
convs; 18/34) or bottlenecks (1x1 reduce, 3x3, 1x1 expand x4; 50+), global average pooling, FC.
``shortcut="B"`` (default) projects with 1x1 conv + BN where the shape changes; the parameter
counts then equal torchvision's. In a strided bottleneck the stride sits in the first 1x1 conv,
as in the authors' released models (``stride_in_1x1=False`` moves it to the 3x3 conv, the
"v1.5" layout of torchvision; same parameter count). The small-input stem (``stem="small"``,
chosen by "auto" below 96 px) is a 3x3 stride-1 conv without the max-pool.

CIFAR family ``resnet20/32/44/56/110`` (§4.2 of the paper): 3x3 conv 16, three stages of n basic
blocks (n = 3, 5, 7, 9, 18) with widths 16/32/64, GAP, FC. ``shortcut="A"`` (default, as in the
paper) uses parameter-free identity shortcuts that subsample and zero-pad channels; resnet20
then has 269,722 params at 3x32x32 (269,434 at 1x28x28). ``shortcut="B"`` gives 272,474
(272,186), the ResNet-20 of BASELINES model (6).

``plain=True`` drops every shortcut (the "plain" nets of the degradation experiment).
``norm="none"`` removes every BatchNorm (convs then get biases; default ``"bn"``, Handbook §11.2.3).
``width`` scales the stem and stage widths (1.0 = the paper; 2.0 turns 16/32/64 into 32/64/128).
Init: He normal (fan_out) for convs, BN weight 1 / bias 0, torch default for the FC layer.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence

import torch
from torch import nn

from cnnlab.models.base import (
    NORMS,
    ImageClassifier,
    check_choice,
    check_common,
    check_width,
    conv_block,
    resolve_stem,
    scale_width,
)
from cnnlab.nn.activations import check_activation, make_activation
from cnnlab.nn.layers import ShortcutA
from cnnlab.registry import MODELS

PAPER = "He et al. 2016, CVPR (Deep Residual Learning); Handbook §3.2.4"
SHORTCUTS = ("A", "B")


def make_shortcut(
    in_chans: int, out_chans: int, stride: int, kind: str, norm: str = "bn"
) -> nn.Module:
    """Identity when shapes match; otherwise option A (zero-pad) or B (1x1 conv + BN)."""
    if in_chans == out_chans and stride == 1:
        return nn.Identity()  # adds no parameters (Handbook §3.2.4)
    if kind == "A":
        return ShortcutA(in_chans, out_chans, stride)
    return conv_block(in_chans, out_chans, 1, stride, activation=None, norm=norm)


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers plus the shortcut, added before the final activation."""

    expansion = 1

    def __init__(
        self,
        in_chans: int,
        width: int,
        stride: int,
        *,
        activation: str,
        shortcut: str | None,
        norm: str = "bn",
    ) -> None:
        super().__init__()
        self.conv1 = conv_block(in_chans, width, 3, stride, activation=activation, norm=norm)
        self.conv2 = conv_block(width, width, 3, activation=None, norm=norm)
        self.shortcut = (
            None if shortcut is None else make_shortcut(in_chans, width, stride, shortcut, norm)
        )
        self.act = make_activation(activation, channels=width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.conv1(x))
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return self.act(out)


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 -> 1x1 expand (x4) conv-BN layers plus the shortcut."""

    expansion = 4

    def __init__(
        self,
        in_chans: int,
        width: int,
        stride: int,
        *,
        activation: str,
        shortcut: str | None,
        stride_in_1x1: bool = True,
        norm: str = "bn",
    ) -> None:
        super().__init__()
        out_chans = width * self.expansion
        s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = conv_block(in_chans, width, 1, s1, activation=activation, norm=norm)
        self.conv2 = conv_block(width, width, 3, s3, activation=activation, norm=norm)
        self.conv3 = conv_block(width, out_chans, 1, activation=None, norm=norm)
        self.shortcut = (
            None if shortcut is None else make_shortcut(in_chans, out_chans, stride, shortcut, norm)
        )
        self.act = make_activation(activation, channels=out_chans)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv3(self.conv2(self.conv1(x)))
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return self.act(out)


def _make_stem(
    kind: str, in_chans: int, width: int, activation: str, norm: str = "bn"
) -> nn.Sequential:
    """ImageNet stem (7x7/2 conv + 3x3/2 max-pool) or small-input stem (3x3/1 conv, no pool)."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    if kind == "imagenet":
        layers["conv"] = conv_block(in_chans, width, 7, 2, activation=activation, norm=norm)
        layers["pool"] = nn.MaxPool2d(3, 2, padding=1)
    else:
        layers["conv"] = conv_block(in_chans, width, 3, 1, activation=activation, norm=norm)
    return nn.Sequential(layers)


class ResNet(ImageClassifier):
    """Stem, stages ``layer1..layerN`` of residual blocks, global average pooling, FC head."""

    def __init__(
        self,
        *,
        arch: str,
        block: str,
        layers: Sequence[int],
        widths: Sequence[int],
        stem: str,
        stem_width: int,
        num_classes: int,
        in_chans: int,
        input_size: int,
        activation: str,
        shortcut: str,
        plain: bool,
        width: float = 1.0,
        stride_in_1x1: bool = True,
        norm: str = "bn",
    ) -> None:
        super().__init__(
            arch=arch,
            num_classes=num_classes,
            in_chans=in_chans,
            input_size=input_size,
            paper=PAPER,
            fixed_size=False,
            stem=stem,
            shortcut=None if plain else shortcut,
            width=width,
            norm=norm,
        )
        self.stem = _make_stem(stem, in_chans, scale_width(stem_width, width), activation, norm)
        block_cls = Bottleneck if block == "bottleneck" else BasicBlock
        extra: dict[str, object] = {"norm": norm}
        if block == "bottleneck":
            extra["stride_in_1x1"] = stride_in_1x1
        chans = scale_width(stem_width, width)
        for i, (n, stage_width) in enumerate(zip(layers, widths, strict=True)):
            stage_width = scale_width(stage_width, width)
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1  # stages 2+ halve the map at entry
                kind = None if plain else shortcut
                blocks.append(
                    block_cls(
                        chans, stage_width, stride, activation=activation, shortcut=kind, **extra
                    )
                )
                chans = stage_width * block_cls.expansion
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        self.num_stages = len(layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(chans, num_classes)
        self._he_init()

    @torch.no_grad()
    def _he_init(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def stages(self) -> list[nn.Sequential]:
        """The residual stages in order (for hooks: CAM, feature fusion)."""
        return [getattr(self, f"layer{i + 1}") for i in range(self.num_stages)]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        x = self.stem(x)
        for stage in self.stages():
            x = stage(x)
        return self.pool(x).flatten(1)  # (B, C, h, w) -> (B, C, 1, 1) -> (B, C)


IMAGENET_DEPTHS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
CIFAR_DEPTHS = {20: 3, 32: 5, 44: 7, 56: 9, 110: 18}


def _check(
    num_classes: int,
    in_chans: int,
    input_size: int,
    activation: str,
    shortcut: str,
    width: float,
    norm: str = "bn",
) -> None:
    check_common(num_classes, in_chans, input_size)
    check_activation(activation)
    check_choice("shortcut", shortcut, SHORTCUTS)
    check_width(width)
    check_choice("norm", norm, NORMS)


def _build_imagenet(
    depth: int,
    *,
    num_classes: int,
    in_chans: int,
    input_size: int,
    activation: str,
    stem: str,
    shortcut: str,
    plain: bool,
    width: float,
    stride_in_1x1: bool = True,
    norm: str = "bn",
) -> ResNet:
    block, layers = IMAGENET_DEPTHS[depth]
    _check(num_classes, in_chans, input_size, activation, shortcut, width, norm)
    return ResNet(
        arch=f"resnet{depth}",
        block=block,
        layers=layers,
        widths=(64, 128, 256, 512),
        stem=resolve_stem(stem, input_size),
        stem_width=64,
        num_classes=num_classes,
        in_chans=in_chans,
        input_size=input_size,
        activation=activation,
        shortcut=shortcut,
        plain=bool(plain),
        width=float(width),
        stride_in_1x1=bool(stride_in_1x1),
        norm=norm,
    )


def _basic_builder(depth: int) -> Callable[..., ResNet]:
    def builder(
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        input_size: int = 224,
        activation: str = "relu",
        stem: str = "auto",
        shortcut: str = "B",
        plain: bool = False,
        width: float = 1.0,
        norm: str = "bn",
    ) -> ResNet:
        return _build_imagenet(
            depth, num_classes=num_classes, in_chans=in_chans, input_size=input_size,
            activation=activation, stem=stem, shortcut=shortcut, plain=plain, width=width,
            norm=norm,
        )  # fmt: skip

    return builder


def _bottleneck_builder(depth: int) -> Callable[..., ResNet]:
    def builder(
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        input_size: int = 224,
        activation: str = "relu",
        stem: str = "auto",
        shortcut: str = "B",
        plain: bool = False,
        width: float = 1.0,
        stride_in_1x1: bool = True,
        norm: str = "bn",
    ) -> ResNet:
        return _build_imagenet(
            depth, num_classes=num_classes, in_chans=in_chans, input_size=input_size,
            activation=activation, stem=stem, shortcut=shortcut, plain=plain, width=width,
            stride_in_1x1=stride_in_1x1, norm=norm,
        )  # fmt: skip

    return builder


def _register_imagenet(depth: int) -> None:
    block, layers = IMAGENET_DEPTHS[depth]
    name = f"resnet{depth}"
    builder = (_bottleneck_builder if block == "bottleneck" else _basic_builder)(depth)
    builder.__name__ = builder.__qualname__ = name
    builder.__doc__ = (
        f"ResNet-{depth} for ImageNet (He et al. 2016), {block} blocks {list(layers)}.\n\n"
        "stem: 'imagenet' (7x7/2 conv + 3x3/2 max-pool), 'small' (3x3/1 conv, no pool) or "
        "'auto' (imagenet from 96 px up). shortcut: 'B' (1x1 projection where the shape "
        "changes) or 'A' (zero-padding). plain=True removes all shortcuts. width scales all "
        "channel widths (1.0 = the paper). norm='none' removes every BatchNorm."
        + (
            " stride_in_1x1=False moves the stride to the 3x3 conv."
            if block == "bottleneck"
            else ""
        )
    )
    MODELS.register(name)(builder)


def _register_cifar(depth: int) -> None:
    n = CIFAR_DEPTHS[depth]
    name = f"resnet{depth}"

    def builder(
        *,
        num_classes: int = 10,
        in_chans: int = 3,
        input_size: int = 32,
        activation: str = "relu",
        shortcut: str = "A",
        plain: bool = False,
        width: float = 1.0,
        norm: str = "bn",
    ) -> ResNet:
        _check(num_classes, in_chans, input_size, activation, shortcut, width, norm)
        return ResNet(
            arch=name,
            block="basic",
            layers=(n, n, n),
            widths=(16, 32, 64),
            stem="small",
            stem_width=16,
            num_classes=num_classes,
            in_chans=in_chans,
            input_size=input_size,
            activation=activation,
            shortcut=shortcut,
            plain=bool(plain),
            width=float(width),
            norm=norm,
        )

    builder.__name__ = builder.__qualname__ = name
    builder.__doc__ = (
        f"ResNet-{depth} for CIFAR (He et al. 2016 §4.2): 3 stages x {n} basic blocks, 16/32/64."
        "\n\nshortcut: 'A' (paper: subsample + zero-pad, no parameters) or 'B' (1x1 conv + BN "
        "where the shape changes). plain=True removes all shortcuts. width scales the stage "
        "widths (2.0 gives 32/64/128). norm='none' removes every BatchNorm (default 'bn')."
    )
    MODELS.register(name)(builder)


for _depth in IMAGENET_DEPTHS:
    _register_imagenet(_depth)
for _depth in CIFAR_DEPTHS:
    _register_cifar(_depth)
