"""LeNet-5: the case study's ReLU/max-pool form and the faithful LeCun et al. 1998 network.

Both variants share the layer plan C1 6@5x5 -> S2 -> C3 16@5x5 -> S4 -> C5 120@5x5 -> F6 84 ->
output, on a 32x32 input (smaller images are zero-padded to 32, as the case study pads 28 -> 32).

``variant="case_study"`` (seed 004, BASELINES model 4): full C3, 2x2 max pooling, ReLU after
C1, C3, C5 and F6, a linear output layer; 61,706 params at 1x28x28 with 10 classes.

``variant="1998"`` (LeCun, Bottou, Bengio, Haffner 1998, Proc. IEEE 86(11)):
- squashing ``1.7159 * tanh(2a/3)`` after every layer up to F6;
- S2/S4 sum each 2x2 block, multiply by one trainable coefficient per map and add a bias;
- C3 connects each of its 16 maps to a subset of S2's 6 maps (the paper's Table I), giving
  60 5x5 kernels and 1,516 parameters;
- the output layer has Euclidean RBF units ``y_i = ||x - w_i||^2`` over fixed 84-d prototypes
  (a non-trainable buffer; random +-1 codes here, hand-drawn 7x12 bitmaps in the paper). The
  head returns ``-y_i`` so that larger means more likely and argmax / cross-entropy work;
- every parameter starts uniform in +-2.4 / F_i, F_i = fan-in of the unit it belongs to.
  Trainable parameters at 1x32x32: C1 156, S2 12, C3 1,516, S4 32, C5 48,120, F6 10,164, total
  60,000 (the paper's figure).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.models.base import (
    ImageClassifier,
    check_choice,
    check_common,
    check_norm,
    check_positive_int,
    layer_bias,
    norm_act,
)
from cnnlab.nn.activations import check_activation, make_activation
from cnnlab.registry import MODELS

#: LeCun et al. 1998, Table I: the S2 maps (0-5) feeding each C3 map (0-15).
C3_TABLE: tuple[tuple[int, ...], ...] = (
    *(tuple((j + t) % 6 for t in range(3)) for j in range(6)),  # maps 0-5: 3 neighbours
    *(tuple((j + t) % 6 for t in range(4)) for j in range(6)),  # maps 6-11: 4 neighbours
    (0, 1, 3, 4),  # maps 12-14: 4 non-contiguous
    (1, 2, 4, 5),
    (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),  # map 15: all six
)

VARIANTS = ("case_study", "1998")


class Subsample2d(nn.Module):
    """LeNet subsampling: sum each k x k block, times a trainable per-map coefficient, plus bias."""

    def __init__(self, channels: int, kernel_size: int = 2) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kernel_size
        block_sum = F.avg_pool2d(x, k) * (k * k)
        return block_sum * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class ConnectionTableConv2d(nn.Module):
    """A conv where output map o only sees the input maps ``table[o]`` (LeNet-5's C3).

    Only the connected kernels are parameters, (n_connections, k, k); the dense
    (out, in, k, k) weight is assembled with zeros at every forward pass.
    """

    def __init__(self, in_chans: int, table: tuple[tuple[int, ...], ...], kernel_size: int):
        super().__init__()
        pairs = [(o, i) for o, inputs in enumerate(table) for i in inputs]
        if any(not 0 <= i < in_chans for _, i in pairs):
            raise ValueError(f"connection table refers to input maps outside 0..{in_chans - 1}")
        self.in_chans, self.out_chans, self.kernel_size = in_chans, len(table), kernel_size
        self.table = table
        self.weight = nn.Parameter(torch.empty(len(pairs), kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(len(table)))
        flat = torch.tensor([o * in_chans + i for o, i in pairs], dtype=torch.long)
        self.register_buffer("flat_index", flat, persistent=False)
        nn.init.normal_(self.weight, std=0.1)  # placeholder; LeNet5 re-initialises

    def dense_weight(self) -> torch.Tensor:
        """(out, in, k, k) weight with zeros where the table has no connection."""
        k = self.kernel_size
        full = self.weight.new_zeros(self.out_chans * self.in_chans, k, k)
        full = full.index_copy(0, self.flat_index, self.weight)
        return full.view(self.out_chans, self.in_chans, k, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.dense_weight(), self.bias)

    def extra_repr(self) -> str:
        return f"{self.in_chans}, {self.out_chans}, kernel_size={self.kernel_size}, " + (
            f"connections={self.weight.shape[0]}"
        )


class RBFOutput(nn.Module):
    """Euclidean RBF output units returning ``-||x - w_c||^2`` per class (LeCun et al. 1998)."""

    def __init__(self, in_features: int, num_classes: int, seed: int = 0) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, num_classes
        gen = torch.Generator().manual_seed(seed)
        codes = torch.randint(0, 2, (num_classes, in_features), generator=gen) * 2 - 1
        self.register_buffer("prototypes", codes.float())  # fixed, as in the paper

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        diff = x.unsqueeze(1) - self.prototypes  # (B, 1, D) - (K, D) -> (B, K, D)
        return -diff.pow(2).sum(-1)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


class LeNet5(ImageClassifier):
    """LeNet-5 in the case-study form or the faithful 1998 form (see the module docstring)."""

    def __init__(
        self,
        *,
        num_classes: int,
        in_chans: int,
        input_size: int,
        activation: str,
        variant: str,
        norm: str = "none",
        bn_position: str = "before",
    ) -> None:
        super().__init__(
            arch="lenet5",
            num_classes=num_classes,
            in_chans=in_chans,
            input_size=input_size,
            paper="LeCun et al. 1998, Proc. IEEE 86(11)"
            + ("" if variant == "1998" else "; ReLU/max-pool form of the case study (seed 004)"),
            fixed_size=True,
            variant=variant,
            norm=norm,
        )
        self.variant = variant
        faithful = variant == "1998"
        pad = max(0, 32 - input_size)
        side = max(input_size, 32)
        c5_side = ((side - 4) // 2 - 4) // 2 - 4  # 1 at 32x32
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        if pad:
            layers["pad"] = nn.ZeroPad2d((pad // 2, pad - pad // 2, pad // 2, pad - pad // 2))
        bias = layer_bias(norm, bn_position)

        def post(index: int, width: int, dims: int = 2) -> None:
            """BN (norm="bn") and the activation after layer ``index``: bn<i>, act<i>."""
            for name, module in norm_act(width, activation, norm, bn_position, dims=dims):
                layers[f"{name}{index}"] = module

        layers["c1"] = nn.Conv2d(in_chans, 6, 5, bias=bias)
        post(1, 6)
        layers["s2"] = Subsample2d(6) if faithful else nn.MaxPool2d(2)
        if faithful:
            layers["act2"] = make_activation(activation, channels=6)
        layers["c3"] = (
            ConnectionTableConv2d(6, C3_TABLE, 5) if faithful else nn.Conv2d(6, 16, 5, bias=bias)
        )
        post(3, 16)
        layers["s4"] = Subsample2d(16) if faithful else nn.MaxPool2d(2)
        if faithful:
            layers["act4"] = make_activation(activation, channels=16)
        layers["c5"] = nn.Conv2d(16, 120, 5, bias=bias)
        post(5, 120)
        layers["flatten"] = nn.Flatten()  # (B, 120, s, s) -> (B, 120*s*s); s = 1 at 32x32
        layers["f6"] = nn.Linear(120 * c5_side * c5_side, 84, bias=bias)
        post(6, 84, dims=1)
        self.features = nn.Sequential(layers)
        self.head = RBFOutput(84, num_classes) if faithful else nn.Linear(84, num_classes)
        if faithful:
            self._lecun_init()

    @torch.no_grad()
    def _lecun_init(self) -> None:
        """Uniform in +-2.4/F_i, F_i the fan-in of the unit (LeCun et al. 1998, appendix C)."""
        for layer in (self.features.c1, self.features.c5, self.features.f6):
            fan_in = layer.weight[0].numel()
            nn.init.uniform_(layer.weight, -2.4 / fan_in, 2.4 / fan_in)
            nn.init.uniform_(layer.bias, -2.4 / fan_in, 2.4 / fan_in)
        for sub in (self.features.s2, self.features.s4):
            bound = 2.4 / sub.kernel_size**2  # each unit sums k*k inputs
            nn.init.uniform_(sub.weight, -bound, bound)
            nn.init.uniform_(sub.bias, -bound, bound)
        c3 = self.features.c3
        k2 = c3.kernel_size**2
        fan_in = torch.tensor(
            [len(c3.table[o]) * k2 for o, ins in enumerate(c3.table) for _ in ins]
        )
        c3.weight.uniform_(-1, 1).mul_((2.4 / fan_in).view(-1, 1, 1).to(c3.weight))
        bias_fan = torch.tensor([len(ins) * k2 for ins in c3.table])
        c3.bias.uniform_(-1, 1).mul_((2.4 / bias_fan).to(c3.bias))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.features(x)

    def reset_classifier(self, num_classes: int) -> None:
        if self.variant != "1998":
            super().reset_classifier(num_classes)
            return
        check_positive_int("num_classes", num_classes)
        self.head = RBFOutput(84, num_classes).to(self.features.f6.weight.device)
        self.num_classes = self.default_cfg["num_classes"] = num_classes


@MODELS.register("lenet5")
def lenet5(
    *,
    num_classes: int = 10,
    in_chans: int = 1,
    input_size: int = 32,
    activation: str | None = None,
    variant: str = "case_study",
    norm: str = "none",
    bn_position: str = "before",
) -> LeNet5:
    """LeNet-5 (LeCun et al. 1998): case-study ReLU form (61,706 params) or variant="1998".

    ``activation=None`` means the variant's own: "relu" for the case study, "lecun_tanh"
    (1.7159*tanh(2x/3)) for 1998. Inputs smaller than 32x32 are zero-padded to 32.
    norm="bn" (case-study variant only) adds BatchNorm after C1, C3, C5 and F6, before the
    activation (bn_position="before", default; those layers then have no bias) or after it.
    """
    check_common(num_classes, in_chans, input_size)
    check_choice("variant", variant, VARIANTS)
    norm, bn_position = check_norm(norm, bn_position)
    if norm != "none" and variant == "1998":
        raise ValueError("norm='bn' is only available for variant='case_study' (1998 had no BN)")
    if activation is None:
        activation = "lecun_tanh" if variant == "1998" else "relu"
    check_activation(activation)
    return LeNet5(
        num_classes=num_classes,
        in_chans=in_chans,
        input_size=input_size,
        activation=activation,
        variant=variant,
        norm=norm,
        bn_position=bn_position,
    )
