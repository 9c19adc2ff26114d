"""The case study's one- and two-convolution networks (seed 004; BASELINES models 2 and 3)."""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.models.base import (
    ImageClassifier,
    check_common,
    check_norm,
    check_probability,
    layer_bias,
    norm_act,
    too_small,
)
from cnnlab.nn.activations import check_activation, is_monotone, make_activation
from cnnlab.nn.dropout import Dropout
from cnnlab.nn.layers import conv_out_size
from cnnlab.registry import MODELS

CASE_STUDY = "Fashion-MNIST case study (seed 004)"


class OneConvNet(ImageClassifier):
    """INPUT -> CONV 32@3x3 -> [BN] -> act -> POOL 2 -> FC -> OUTPUT (the head is the only FC).

    ``norm="bn"`` adds BatchNorm2d(32) before the activation (conv without bias) or, with
    ``bn_position="after"``, between the activation and the pool.
    """

    def __init__(
        self,
        *,
        num_classes: int,
        in_chans: int,
        input_size: int,
        activation: str,
        norm: str = "none",
        bn_position: str = "before",
    ) -> None:
        super().__init__(
            arch="cnn1",
            num_classes=num_classes,
            in_chans=in_chans,
            input_size=input_size,
            paper=CASE_STUDY,
            fixed_size=True,
            norm=norm,
        )
        side = conv_out_size(conv_out_size(input_size, 3), 2, 2)
        if side < 1:
            raise too_small("cnn1", input_size, 4)
        self.conv = nn.Conv2d(in_chans, 32, 3, bias=layer_bias(norm, bn_position))
        self.bn = nn.BatchNorm2d(32) if norm == "bn" else None
        self.act = make_activation(activation, channels=32)
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Linear(32 * side * side, num_classes)  # 5408 inputs at 28x28
        self.bn_after = norm == "bn" and bn_position == "after"
        # act(pool(x)) == pool(act(x)) for a non-decreasing act; pooling first does the
        # activation (forward and backward) on a quarter of the elements. BN after the
        # activation sits between them, so the order then stays as written.
        self.pool_first = is_monotone(activation) and not self.bn_after

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        x = self.conv(x)
        if self.bn is not None and not self.bn_after:
            x = self.bn(x)
        if self.pool_first:
            x = self.act(self.pool(x))
        else:
            x = self.act(x)
            if self.bn_after:
                x = self.bn(x)
            x = self.pool(x)
        return x.flatten(1)  # (B, 32, s, s) -> (B, 32*s*s)


class TwoConvNet(ImageClassifier):
    """Keras ``mnist_cnn`` layout: conv32, conv64, pool, dropout, FC128, dropout, FC.

    ``norm="bn"`` adds BatchNorm after both convs and the FC128 layer, before the activation
    (those layers then have no bias) or after it (``bn_position="after"``).
    """

    def __init__(
        self,
        *,
        num_classes: int,
        in_chans: int,
        input_size: int,
        activation: str,
        dropout: float,
        conv_dropout: float,
        norm: str = "none",
        bn_position: str = "before",
    ) -> None:
        super().__init__(
            arch="cnn2",
            num_classes=num_classes,
            in_chans=in_chans,
            input_size=input_size,
            paper=CASE_STUDY + "; Keras mnist_cnn example",
            fixed_size=True,
            norm=norm,
        )
        side = conv_out_size(input_size - 4, 2, 2)  # two valid 3x3 convs, then 2x2 pool
        if side < 1:
            raise too_small("cnn2", input_size, 6)
        bias = layer_bias(norm, bn_position)

        def post(width: int, dims: int = 2) -> list[nn.Module]:
            return [m for _, m in norm_act(width, activation, norm, bn_position, dims=dims)]

        # conv -> act -> pool computed as conv -> pool -> act when act is non-decreasing: the
        # same function (max commutes with it), with a quarter of the activation work. A BN
        # after the activation stays between it and the pool.
        conv2_post = post(64)
        if is_monotone(activation) and not (norm == "bn" and bn_position == "after"):
            conv2_post.insert(len(conv2_post) - 1, nn.MaxPool2d(2))
        else:
            conv2_post.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, 32, 3, bias=bias),
            *post(32),
            nn.Conv2d(32, 64, 3, bias=bias),
            *conv2_post,
            Dropout(conv_dropout),
            nn.Flatten(),  # (B, 64, s, s) -> (B, 64*s*s); 9216 at 28x28
            nn.Linear(64 * side * side, 128, bias=bias),
            *post(128, dims=1),
            Dropout(dropout),
        )
        self.head = nn.Linear(128, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.features(x)


@MODELS.register("cnn1")
def cnn1(
    *,
    num_classes: int = 10,
    in_chans: int = 1,
    input_size: int = 28,
    activation: str = "relu",
    norm: str = "none",
    bn_position: str = "before",
) -> OneConvNet:
    """One-conv CNN: conv 32@3x3, pool, FC (54,410 params at 1x28x28, 10 classes).

    norm: "none" or "bn" (BatchNorm after the conv, Handbook §11.2.3); bn_position: "before"
    (default, the handbook's advice) or "after" the activation.
    """
    check_common(num_classes, in_chans, input_size)
    check_activation(activation)
    norm, bn_position = check_norm(norm, bn_position)
    return OneConvNet(
        num_classes=num_classes,
        in_chans=in_chans,
        input_size=input_size,
        activation=activation,
        norm=norm,
        bn_position=bn_position,
    )


@MODELS.register("cnn2")
def cnn2(
    *,
    num_classes: int = 10,
    in_chans: int = 1,
    input_size: int = 28,
    activation: str = "relu",
    dropout: float = 0.5,
    conv_dropout: float = 0.25,
    norm: str = "none",
    bn_position: str = "before",
) -> TwoConvNet:
    """Two-conv CNN with dropout (1,199,882 params at 1x28x28, 10 classes).

    ``conv_dropout`` follows the pooling layer, ``dropout`` the 128-unit FC layer. norm: "none"
    or "bn" (BatchNorm after both convs and FC128, Handbook §11.2.3); bn_position: "before"
    (default) or "after" the activation.
    """
    check_common(num_classes, in_chans, input_size)
    check_activation(activation)
    norm, bn_position = check_norm(norm, bn_position)
    return TwoConvNet(
        num_classes=num_classes,
        in_chans=in_chans,
        input_size=input_size,
        activation=activation,
        dropout=check_probability("dropout", dropout),
        conv_dropout=check_probability("conv_dropout", conv_dropout),
        norm=norm,
        bn_position=bn_position,
    )
