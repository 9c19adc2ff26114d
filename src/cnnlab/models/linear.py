"""Softmax regression: one fully-connected layer on the raw pixels (case study, seed 004)."""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.models.base import ImageClassifier, check_common
from cnnlab.nn.activations import check_activation
from cnnlab.registry import MODELS


class SoftmaxRegression(ImageClassifier):
    """Flatten -> Linear(C*H*W, num_classes); the softmax lives in the loss."""

    def __init__(self, *, num_classes: int, in_chans: int, input_size: int) -> None:
        super().__init__(
            arch="softmax",
            num_classes=num_classes,
            in_chans=in_chans,
            input_size=input_size,
            paper="multinomial logistic regression (case study, seed 004)",
            fixed_size=True,
        )
        self.head = nn.Linear(in_chans * input_size * input_size, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return x.flatten(1)  # (B, C, H, W) -> (B, C*H*W)


@MODELS.register("softmax")
def softmax(
    *,
    num_classes: int = 10,
    in_chans: int = 1,
    input_size: int = 28,
    activation: str = "relu",
) -> SoftmaxRegression:
    """Softmax regression: Flatten -> Linear (7,850 params at 1x28x28, 10 classes).

    ``activation`` is accepted for a uniform builder contract and validated, but this model
    has no hidden layer, so it has no effect.
    """
    check_common(num_classes, in_chans, input_size)
    check_activation(activation)
    return SoftmaxRegression(num_classes=num_classes, in_chans=in_chans, input_size=input_size)
