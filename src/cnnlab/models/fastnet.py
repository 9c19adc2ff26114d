"""``fastnet``: a small conv net built to reach an accuracy in as little training as possible.

The shape of airbench's network (Jordan 2024, "94% on CIFAR-10 in 3.29 seconds on a single
GPU"), sized for 28 x 28 grey images on a CPU: a frozen patch-whitening stem
(``cnnlab.nn.whitening``, handbook ch. 6 applied to 2 x 2 patches) followed by an activation,
then one group per entry of ``widths``::

    conv3x3 -> maxpool 2 -> BN -> act  [-> conv3x3 -> BN -> act] x (depth - 1)

(pooling before BN and the activation does both on a quarter of the pixels), a global max
pool and a linear classifier whose logits are multiplied by ``logit_scale``. Batch norm
(handbook §11.2.3) takes a ``bn_momentum`` and, with ``bn_scale=False``, a frozen scale
gamma = 1 (only the shift beta learns), airbench's choice for short runs.
At 28 x 28 the 2 x 2 stem gives 27 x 27 maps and three groups pool them to 13, 6 and 3; at
32 x 32 to 31, 15, 7, 3. ``stem="conv"`` replaces the whitening by a plain conv3x3-BN-act.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cnnlab.models.base import ImageClassifier, check_choice, check_common, too_small
from cnnlab.nn.activations import check_activation, make_activation
from cnnlab.nn.layers import conv_out_size
from cnnlab.nn.whitening import MODES, PatchWhitening
from cnnlab.registry import MODELS

PAPER = "airbench (Jordan 2024) network shape; cnnlab's fast recipes"
STEMS = ("whiten", "conv")


def _bn(width: int, momentum: float, scale: bool) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(width, momentum=momentum)
    bn.weight.requires_grad_(scale)  # frozen gamma = 1: BN only centres and shifts
    return bn


class FastNet(ImageClassifier):
    """Whitening stem, ``len(widths)`` conv groups with max-pooling, global max pool, linear."""

    def __init__(
        self,
        *,
        num_classes: int,
        in_chans: int,
        input_size: int,
        widths: Sequence[int],
        depth: int,
        activation: str,
        stem: str,
        whiten_kernel: int,
        whiten_stride: int,
        whiten_mode: str,
        whiten_eps: float,
        whiten_trainable: bool,
        bn_momentum: float,
        bn_scale: bool,
        logit_scale: float,
    ) -> None:
        super().__init__(arch="fastnet", num_classes=num_classes, in_chans=in_chans,
                         input_size=input_size, paper=PAPER, fixed_size=False,
                         widths=list(widths), depth=depth)  # fmt: skip
        layers: list[nn.Module] = []
        if stem == "whiten":
            white = PatchWhitening(in_chans, whiten_kernel, mode=whiten_mode, eps=whiten_eps,
                                   stride=whiten_stride, trainable=whiten_trainable)  # fmt: skip
            layers += [white, make_activation(activation)]
            cin = white.out_chans
            side = conv_out_size(input_size, whiten_kernel, whiten_stride)
        else:
            cin, side = widths[0], input_size
            layers += [nn.Conv2d(in_chans, cin, 3, padding=1, bias=False),
                       _bn(cin, bn_momentum, bn_scale), make_activation(activation)]  # fmt: skip
        for width in widths:
            side //= 2
            if side < 1:
                raise too_small("fastnet", input_size, 2 ** len(widths) + 1, "use fewer widths")
            layers += [nn.Conv2d(cin, width, 3, padding=1, bias=False), nn.MaxPool2d(2),
                       _bn(width, bn_momentum, bn_scale), make_activation(activation)]  # fmt: skip
            for _ in range(depth - 1):
                layers += [
                    nn.Conv2d(width, width, 3, padding=1, bias=False),
                    _bn(width, bn_momentum, bn_scale),
                    make_activation(activation),
                ]
            cin = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.logit_scale = logit_scale
        self.head = nn.Linear(cin, num_classes, bias=False)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        # (B, C, h, w) -> (B, C); the scale multiplies the logits (the head has no bias)
        return self.pool(self.features(x)).flatten(1) * self.logit_scale


@MODELS.register("fastnet")
def fastnet(
    *,
    num_classes: int = 10,
    in_chans: int = 1,
    input_size: int = 28,
    activation: str = "gelu",
    widths: Sequence[int] = (32, 64, 128),
    depth: int = 2,
    stem: str = "whiten",
    whiten_kernel: int = 2,
    whiten_stride: int = 1,
    whiten_mode: str = "zca",
    whiten_eps: float = 5e-4,
    whiten_trainable: bool = False,
    bn_momentum: float = 0.1,
    bn_scale: bool = True,
    logit_scale: float = 1.0,
) -> nn.Module:
    """A speed-first conv net (airbench's shape): whitening stem, conv groups 32/64/128 x 2.

    ``widths`` (one conv group each, maxpool in the first conv), ``depth`` convs per group,
    ``stem`` whiten (frozen 2 x 2 patch whitening, ``whiten_*``; ``whiten_stride=2`` halves
    the maps at once) or conv, batch norm
    ``bn_momentum`` and trainable ``bn_scale``, ``logit_scale`` multiplying the logits.
    """
    check_common(num_classes, in_chans, input_size)
    check_activation(activation)
    check_choice("stem", stem, STEMS)
    check_choice("whiten_mode", whiten_mode, MODES)
    widths = list(widths)
    if not widths or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
        raise ValueError(f"widths must be a non-empty list of positive integers, got {widths!r}")
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be a positive integer, got {depth!r}")
    if not 0.0 <= bn_momentum <= 1.0:
        raise ValueError(f"bn_momentum must be in [0, 1], got {bn_momentum!r}")
    if not logit_scale > 0:
        raise ValueError(f"logit_scale must be > 0, got {logit_scale!r}")
    return FastNet(num_classes=num_classes, in_chans=in_chans, input_size=input_size,
                   widths=widths, depth=depth, activation=activation, stem=stem,
                   whiten_kernel=whiten_kernel, whiten_stride=whiten_stride,
                   whiten_mode=whiten_mode, whiten_eps=whiten_eps,
                   whiten_trainable=whiten_trainable, bn_momentum=bn_momentum,
                   bn_scale=bn_scale, logit_scale=logit_scale)  # fmt: skip
