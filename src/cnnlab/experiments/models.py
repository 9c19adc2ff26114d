"""Small networks some experiments need that the zoo does not offer.

``DownsampleNet``: two conv stages whose downsampling is either 2x2 max pooling or, in the
"all convolutional" style of Springenberg et al. (Handbook §2.4.2), an extra 3x3 stride-2
convolution in its place. ``mlp``: a tiny perceptron for the XOR toy (Handbook §0.3).
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.models.base import ImageClassifier
from cnnlab.nn import make_activation

DOWNSAMPLING = ("max", "stride")


class DownsampleNet(ImageClassifier):
    """conv3x3-ReLU, down, conv3x3-ReLU, down, FC; ``down`` = max pool or a stride-2 conv."""

    def __init__(
        self,
        *,
        num_classes: int,
        in_chans: int,
        input_size: int,
        downsample: str = "max",
        widths: tuple[int, int] = (16, 32),
    ) -> None:
        if downsample not in DOWNSAMPLING:
            raise ValueError(f"downsample must be one of {DOWNSAMPLING}, got {downsample!r}")
        if input_size % 4:
            raise ValueError(f"DownsampleNet needs an input side divisible by 4, got {input_size}")
        super().__init__(
            arch=f"downsample_{downsample}",
            num_classes=num_classes,
            in_chans=in_chans,
            input_size=input_size,
            paper="Springenberg et al. 2015 (all-convolutional net)",
            fixed_size=True,
        )
        c1, c2 = widths

        def down(c: int) -> list[nn.Module]:
            if downsample == "max":
                return [nn.MaxPool2d(2)]
            return [nn.Conv2d(c, c, 3, stride=2, padding=1), nn.ReLU()]

        self.features = nn.Sequential(
            nn.Conv2d(in_chans, c1, 3, padding=1),
            nn.ReLU(),
            *down(c1),
            nn.Conv2d(c1, c2, 3, padding=1),
            nn.ReLU(),
            *down(c2),
            nn.Flatten(),  # (B, c2, s/4, s/4) -> (B, c2 * s*s/16)
        )
        self.head = nn.Linear(c2 * (input_size // 4) ** 2, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.features(x)


def mlp(hidden: int | None, activation: str = "tanh") -> nn.Module:
    """2 -> 2 logits: a linear model (``hidden=None``) or one hidden layer of ``hidden`` units."""
    if hidden is None:
        return nn.Linear(2, 2)
    return nn.Sequential(nn.Linear(2, hidden), make_activation(activation), nn.Linear(hidden, 2))
