"""The case study's one- and two-convolution networks (seed 004; BASELINES models 2 and 3)."""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.models.base import ImageClassifier, check_common, check_probability, too_small
from cnnlab.nn.activations import check_activation, is_monotone, make_activation
from cnnlab.nn.dropout import Dropout
from cnnlab.nn.layers import conv_out_size
from cnnlab.registry import MODELS

CASE_STUDY = "Fashion-MNIST case study (seed 004)"


class OneConvNet(ImageClassifier):
    """INPUT -> CONV 32@3x3 -> act -> POOL 2 -> FC -> OUTPUT (the head is the only FC)."""

    def __init__(self, *, num_classes: int, in_chans: int, input_size: int, activation: str):
        super().__init__(
            arch="cnn1",
            num_classes=num_classes,
            in_chans=in_chans,
            input_size=input_size,
            paper=CASE_STUDY,
            fixed_size=True,
        )
        side = conv_out_size(conv_out_size(input_size, 3), 2, 2)
        if side < 1:
            raise too_small("cnn1", input_size, 4)
        self.conv = nn.Conv2d(in_chans, 32, 3)
        self.act = make_activation(activation)
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Linear(32 * side * side, num_classes)  # 5408 inputs at 28x28
        # act(pool(x)) == pool(act(x)) for a non-decreasing act; pooling first does the
        # activation (forward and backward) on a quarter of the elements.
        self.pool_first = is_monotone(activation)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        x = self.conv(x)
        x = self.act(self.pool(x)) if self.pool_first else self.pool(self.act(x))
        return x.flatten(1)  # (B, 32, s, s) -> (B, 32*s*s)


class TwoConvNet(ImageClassifier):
    """Keras ``mnist_cnn`` layout: conv32, conv64, pool, dropout, FC128, dropout, FC."""

    def __init__(
        self,
        *,
        num_classes: int,
        in_chans: int,
        input_size: int,
        activation: str,
        dropout: float,
        conv_dropout: float,
    ) -> None:
        super().__init__(
            arch="cnn2",
            num_classes=num_classes,
            in_chans=in_chans,
            input_size=input_size,
            paper=CASE_STUDY + "; Keras mnist_cnn example",
            fixed_size=True,
        )
        side = conv_out_size(input_size - 4, 2, 2)  # two valid 3x3 convs, then 2x2 pool
        if side < 1:
            raise too_small("cnn2", input_size, 6)
        # conv -> act -> pool computed as conv -> pool -> act when act is non-decreasing: the
        # same function (max commutes with it), with a quarter of the activation work.
        pool_act = [nn.MaxPool2d(2), make_activation(activation)]
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, 32, 3),
            make_activation(activation),
            nn.Conv2d(32, 64, 3),
            *(pool_act if is_monotone(activation) else pool_act[::-1]),
            Dropout(conv_dropout),
            nn.Flatten(),  # (B, 64, s, s) -> (B, 64*s*s); 9216 at 28x28
            nn.Linear(64 * side * side, 128),
            make_activation(activation),
            Dropout(dropout),
        )
        self.head = nn.Linear(128, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.features(x)


@MODELS.register("cnn1")
def cnn1(
    *, num_classes: int = 10, in_chans: int = 1, input_size: int = 28, activation: str = "relu"
) -> OneConvNet:
    """One-conv CNN: conv 32@3x3, pool, FC (54,410 params at 1x28x28, 10 classes)."""
    check_common(num_classes, in_chans, input_size)
    check_activation(activation)
    return OneConvNet(
        num_classes=num_classes, in_chans=in_chans, input_size=input_size, activation=activation
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
) -> TwoConvNet:
    """Two-conv CNN with dropout (1,199,882 params at 1x28x28, 10 classes).

    ``conv_dropout`` follows the pooling layer, ``dropout`` the 128-unit FC layer.
    """
    check_common(num_classes, in_chans, input_size)
    check_activation(activation)
    return TwoConvNet(
        num_classes=num_classes,
        in_chans=in_chans,
        input_size=input_size,
        activation=activation,
        dropout=check_probability("dropout", dropout),
        conv_dropout=check_probability("conv_dropout", conv_dropout),
    )
