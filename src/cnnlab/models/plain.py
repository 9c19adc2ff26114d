"""Plain CIFAR nets ``plain20/32/44/56/110``: the CIFAR ResNets without any shortcut.

He et al. 2016 §4.2 (Fig. 6 left) and Handbook §3.2.4 (Fig. 3.8): the same 6n + 2 layers as
``resnet20/32/44/56/110`` (3x3 conv 16, three stages of n pairs of 3x3 conv-BN-act layers with
16/32/64 channels, stride 2 at the start of stages 2 and 3, GAP, FC), but every block is just
``act(BN(conv(act(BN(conv(x))))))``. They exist for the degradation experiment: the deeper plain
net has the higher *training* error, which the shortcuts remove. With option-A shortcuts the
residual nets have no extra parameters, so ``plainN`` and ``resnetN`` have identical counts
(269,722 at 3x32x32 for N = 20).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from cnnlab.models.resnet import CIFAR_DEPTHS
from cnnlab.registry import MODELS


def _plain_builder(depth: int) -> Callable[..., nn.Module]:
    def builder(
        *,
        num_classes: int = 10,
        in_chans: int = 3,
        input_size: int = 32,
        activation: str = "relu",
        width: float = 1.0,
    ) -> nn.Module:
        model = MODELS.build(
            f"resnet{depth}",
            num_classes=num_classes,
            in_chans=in_chans,
            input_size=input_size,
            activation=activation,
            plain=True,
            width=width,
        )
        model.default_cfg["arch"] = f"plain{depth}"
        model.default_cfg["paper"] = "He et al. 2016 §4.2, plain baseline; Handbook §3.2.4"
        return model

    n = CIFAR_DEPTHS[depth]
    builder.__name__ = builder.__qualname__ = f"plain{depth}"
    builder.__doc__ = (
        f"Plain-{depth} for CIFAR (He et al. 2016 §4.2): resnet{depth} without shortcuts, "
        f"3 stages x {n} conv pairs, 16/32/64.\n\nThe degradation baseline of Handbook §3.2.4. "
        "width scales the stage widths."
    )
    return builder


for _depth in CIFAR_DEPTHS:
    MODELS.register(f"plain{_depth}")(_plain_builder(_depth))
