"""Network building blocks: activations by name and small reusable layers."""

from cnnlab.nn.activations import (
    ACTIVATIONS,
    ScaledTanh,
    check_activation,
    make_activation,
)
from cnnlab.nn.layers import (
    ConvBNAct,
    LocalResponseNorm,
    ShortcutA,
    conv_out_size,
    linear_to_conv,
)

__all__ = [
    "ACTIVATIONS",
    "ConvBNAct",
    "LocalResponseNorm",
    "ScaledTanh",
    "ShortcutA",
    "check_activation",
    "conv_out_size",
    "linear_to_conv",
    "make_activation",
]
