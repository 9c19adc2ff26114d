"""GoogLeNet / Inception v1 (Szegedy et al. 2015, CVPR "Going deeper with convolutions").

Table 1 of the paper (also in seed 002), at 3x224x224:

    conv 7x7/2 64 -> max-pool 3x3/2 -> LRN -> conv 1x1 64 -> conv 3x3 192 -> LRN -> max-pool 3x3/2
    inception 3a, 3b (28x28) -> max-pool 3x3/2 -> 4a .. 4e (14x14) -> max-pool 3x3/2
    -> 5a, 5b (7x7) -> avg-pool 7x7 -> dropout 40% -> linear C

An Inception module runs four branches on the same input and concatenates them along channels:
1x1 conv; 1x1 reduce -> 3x3 conv; 1x1 reduce -> 5x5 conv; 3x3/1 max-pool -> 1x1 "pool proj".
Every conv is followed by the activation (ReLU in the paper). Pools round up (``ceil_mode``, as in
the released Caffe model), giving 112 -> 56 -> 28 -> 14 -> 7. LRN: size 5, alpha 1e-4 divided by
the size, beta 0.75, k 1 (Caffe's bvlc_googlenet settings; the paper gives none).

Parameters: 6,998,552 with 1000 classes (weights and biases, no auxiliary heads); 1.58 G
multiply-adds. ``tests/models/test_zoo_extra_counts.py`` checks every module against Table 1 and
lists the table's own inconsistencies.

Auxiliary classifiers (``aux_logits=True``; paper §5): after 4a and 4d, avg-pool 5x5/3 (14 ->
4), 1x1 conv 128, FC 1024, dropout 70%, linear C. They only run in training mode; ``forward`` still
returns the main logits, and the auxiliary logits of that call are left in ``model.aux_outputs``
(an empty tuple in eval mode). A Task adds them to the loss with the paper's weight 0.3, e.g.
``loss = ce(model(x), y) + auxiliary_loss(model, ce, y)``.

Small-input stem (``stem="small"``, chosen by "auto" below 96 px): conv 3x3/1 64 -> LRN -> conv
1x1 64 -> conv 3x3 192 -> LRN without the two stem pools, so a 28 px image reaches the modules at
28x28 -> 14 -> 7, the paper's own map sizes (32 px: 32 -> 16 -> 8).

Init (Caffe bvlc_googlenet): Xavier-uniform weights, conv biases 0.2, linear biases 0.
``batch_norm=True`` (not in v1; Inception v2) puts BatchNorm after every conv, which then has no
bias. ``width`` scales every conv width (1.0 = the paper).

The Inception-v3 style factorised module (Szegedy et al. 2016) and ``inception_small`` live in
``cnnlab.models.inception_small``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import nn

from cnnlab.models.base import (
    ImageClassifier,
    check_common,
    check_probability,
    check_width,
    resolve_stem,
    scale_width,
    too_small,
)
from cnnlab.nn.activations import check_activation, make_activation
from cnnlab.nn.dropout import Dropout
from cnnlab.nn.layers import ConvBNAct, LocalResponseNorm, conv_out_size
from cnnlab.registry import MODELS

PAPER = "Szegedy et al. 2015, CVPR (Going deeper with convolutions), Table 1; seed 002"
#: Table 1: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj.
MODULES: dict[str, tuple[int, int, int, int, int, int]] = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}
AUX_WEIGHT = 0.3  # paper §5: auxiliary losses are added with weight 0.3


def _lrn() -> LocalResponseNorm:
    return LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=1.0, alpha_over_n=True)


class Inception(nn.Module):
    """Four parallel branches concatenated along channels (Szegedy et al. 2015, Fig. 2b)."""

    def __init__(
        self,
        in_chans: int,
        widths: tuple[int, int, int, int, int, int],
        *,
        activation: str,
        batch_norm: bool,
    ) -> None:
        super().__init__()
        c1, c3r, c3, c5r, c5, proj = widths

        def cba(cin: int, cout: int, k: int) -> ConvBNAct:
            return ConvBNAct(cin, cout, k, batch_norm=batch_norm, activation=activation)

        self.branch1 = cba(in_chans, c1, 1)
        self.branch2 = nn.Sequential(
            OrderedDict(reduce=cba(in_chans, c3r, 1), conv=cba(c3r, c3, 3))
        )
        self.branch3 = nn.Sequential(
            OrderedDict(reduce=cba(in_chans, c5r, 1), conv=cba(c5r, c5, 5))
        )
        self.branch4 = nn.Sequential(
            OrderedDict(pool=nn.MaxPool2d(3, 1, padding=1), proj=cba(in_chans, proj, 1))
        )
        self.out_chans = c1 + c3 + c5 + proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (self.branch1, self.branch2, self.branch3, self.branch4)
        return torch.cat([b(x) for b in branches], dim=1)  # (B, c1 + c3 + c5 + proj, H, W)


class AuxClassifier(nn.Module):
    """Auxiliary head of the paper (§5): avg-pool 5/3, 1x1 conv 128, FC 1024, dropout 0.7, FC."""

    def __init__(
        self, in_chans: int, side: int, num_classes: int, *, activation: str, batch_norm: bool
    ) -> None:
        super().__init__()
        self.side = conv_out_size(side, 5, 3)  # 14 -> 4
        if self.side < 1:
            raise ValueError(
                f"googlenet: auxiliary classifiers need >= 5x5 maps at 4a, got {side}x{side}"
            )
        self.pool = nn.AvgPool2d(5, 3)
        self.conv = ConvBNAct(in_chans, 128, 1, batch_norm=batch_norm, activation=activation)
        self.fc1 = nn.Linear(128 * self.side * self.side, 1024)
        self.act = make_activation(activation)
        self.drop = Dropout(0.7)
        self.fc2 = nn.Linear(1024, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(self.pool(x))
        if x.shape[-2:] != (self.side, self.side):
            raise ValueError(
                f"googlenet auxiliary classifier was built for {self.side}x{self.side} pooled "
                f"maps (from input_size) but got {tuple(x.shape[-2:])}; train at input_size"
            )
        x = x.flatten(1)  # (B, 128, 4, 4) -> (B, 2048)
        return self.fc2(self.drop(self.act(self.fc1(x))))


def _make_stem(
    kind: str,
    in_chans: int,
    widths: tuple[int, int, int],
    activation: str,
    batch_norm: bool,
    lrn: bool,
) -> nn.Sequential:
    """conv1 .. pool2 of Table 1 (ImageNet), or the pool-free 3x3/1 small-input stem."""
    c1, c2r, c2 = widths
    kw = {"batch_norm": batch_norm, "activation": activation}
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    if kind == "imagenet":
        layers["conv1"] = ConvBNAct(in_chans, c1, 7, 2, **kw)
        layers["pool1"] = nn.MaxPool2d(3, 2, ceil_mode=True)
    else:
        layers["conv1"] = ConvBNAct(in_chans, c1, 3, 1, **kw)
    if lrn:
        layers["lrn1"] = _lrn()
    layers["conv2_reduce"] = ConvBNAct(c1, c2r, 1, **kw)
    layers["conv2"] = ConvBNAct(c2r, c2, 3, **kw)
    if lrn:
        layers["lrn2"] = _lrn()
    if kind == "imagenet":
        layers["pool2"] = nn.MaxPool2d(3, 2, ceil_mode=True)
    return nn.Sequential(layers)


def module_sides(input_size: int, stem: str) -> tuple[int, int, int]:
    """Map sides at inception 3x, 4x and 5x (28, 14, 7 at 224 px or with the small stem at 28)."""
    side = input_size
    if stem == "imagenet":
        side = conv_out_size(side, 7, 2, 3)
        side = conv_out_size(side, 3, 2, ceil_mode=True)
        side = conv_out_size(side, 3, 2, ceil_mode=True)
    s4 = conv_out_size(side, 3, 2, ceil_mode=True)
    return side, s4, conv_out_size(s4, 3, 2, ceil_mode=True)


class GoogLeNet(ImageClassifier):
    """Stem, nine Inception modules with max-pools between stages, GAP, dropout, linear head."""

    def __init__(
        self,
        *,
        num_classes: int,
        in_chans: int,
        input_size: int,
        activation: str,
        stem: str,
        aux_logits: bool,
        lrn: bool,
        batch_norm: bool,
        dropout: float,
        width: float,
    ) -> None:
        super().__init__(
            arch="googlenet",
            num_classes=num_classes,
            in_chans=in_chans,
            input_size=input_size,
            paper=PAPER,
            fixed_size=False,
            stem=stem,
            aux_logits=aux_logits,
            width=width,
        )

        def sw(c: int) -> int:
            return scale_width(c, width)

        self.stem = _make_stem(
            stem, in_chans, (sw(64), sw(64), sw(192)), activation, batch_norm, lrn
        )
        chans = sw(192)
        for name, widths in MODULES.items():
            module = Inception(
                chans, tuple(sw(w) for w in widths), activation=activation, batch_norm=batch_norm
            )  # type: ignore[arg-type]
            self.add_module(f"inception{name}", module)
            chans = module.out_chans
            if name in ("3b", "4e"):
                self.add_module(f"pool{name[0]}", nn.MaxPool2d(3, 2, ceil_mode=True))
        self.pool = nn.AdaptiveAvgPool2d(1)  # the 7x7/1 average pool at 224 px
        self.drop = Dropout(dropout)
        self.head = nn.Linear(chans, num_classes)
        self.aux_logits = aux_logits
        self.aux_outputs: tuple[torch.Tensor, ...] = ()
        if aux_logits:
            s4 = module_sides(input_size, stem)[1]
            kw = {"activation": activation, "batch_norm": batch_norm}
            self.aux1 = AuxClassifier(self.inception4a.out_chans, s4, num_classes, **kw)
            self.aux2 = AuxClassifier(self.inception4d.out_chans, s4, num_classes, **kw)
        self._caffe_init()

    @torch.no_grad()
    def _caffe_init(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0.2 if isinstance(m, nn.Conv2d) else 0.0)

    def _stage(self, x: torch.Tensor, names: str, aux: dict[str, Callable]) -> torch.Tensor:
        for name in names.split():
            x = getattr(self, f"inception{name}")(x)
            if name in aux:
                self.aux_outputs = (*self.aux_outputs, aux[name](x))
        return x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        self.aux_outputs = ()
        run_aux = self.aux_logits and self.training
        aux = {"4a": self.aux1, "4d": self.aux2} if run_aux else {}
        x = self._stage(self.stem(x), "3a 3b", aux)
        x = self._stage(self.pool3(x), "4a 4b 4c 4d 4e", aux)
        x = self._stage(self.pool4(x), "5a 5b", aux)
        return self.drop(self.pool(x).flatten(1))  # (B, 1024, 7, 7) -> (B, 1024)


def auxiliary_loss(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    targets: torch.Tensor,
    weight: float = AUX_WEIGHT,
) -> torch.Tensor:
    """``weight * sum(loss_fn(aux, targets))`` over the auxiliary logits of the last forward.

    Zero (a scalar tensor) when the model kept none (eval mode, or ``aux_logits=False``).
    """
    outputs = getattr(model, "aux_outputs", ())
    total = targets.new_zeros((), dtype=torch.float32)
    for aux in outputs:
        total = total + loss_fn(aux, targets)
    return weight * total


@MODELS.register("googlenet")
def googlenet(
    *,
    num_classes: int = 1000,
    in_chans: int = 3,
    input_size: int = 224,
    activation: str = "relu",
    stem: str = "auto",
    aux_logits: bool = False,
    lrn: bool = True,
    batch_norm: bool = False,
    dropout: float = 0.4,
    width: float = 1.0,
) -> GoogLeNet:
    """GoogLeNet / Inception v1 (Szegedy et al. 2015), Table 1; 6,998,552 params at 224/1000.

    stem: "imagenet" (7x7/2 conv + pools), "small" (3x3/1, no stem pools; 28 px -> 28/14/7 maps)
    or "auto" (imagenet from 96 px up). aux_logits: the two auxiliary heads (training mode only;
    logits in ``model.aux_outputs``). batch_norm adds BN after every conv (not in v1). width
    scales all conv widths.
    """
    check_common(num_classes, in_chans, input_size)
    check_activation(activation)
    stem = resolve_stem(stem, input_size)
    if min(module_sides(input_size, stem)) < 1:
        need = next(n for n in range(1, 1000) if min(module_sides(n, stem)) >= 1)
        raise too_small("googlenet", input_size, need, f"stem={stem!r}")
    return GoogLeNet(
        num_classes=num_classes,
        in_chans=in_chans,
        input_size=input_size,
        activation=activation,
        stem=stem,
        aux_logits=bool(aux_logits),
        lrn=bool(lrn),
        batch_norm=bool(batch_norm),
        dropout=check_probability("dropout", dropout),
        width=check_width(width),
    )
