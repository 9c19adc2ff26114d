"""VGG-Nets (Simonyan & Zisserman 2015) configurations A, B, D, E and the case study's small VGG.

ImageNet form (Handbook §3.2.2, Tables 3.2/3.3): 3x3 convs (pad 1) in five blocks each ended by a
2x2/2 max-pool, then FC 4096 -> act -> dropout -> FC 4096 -> act -> dropout -> FC C. At 224 the
blocks give 224, 112, 56, 28, 14 and pool5 is 7x7x512. VGG-16 has 138,357,544 params and 15.47 G
multiply-adds at 224 with 1000 classes.

Small-input form (``stem="small"``, chosen by "auto" below 96 px) for 28/32 px images: the
max-pools round up (``ceil_mode``), so 28 -> 14 -> 7 -> 4 -> 2 -> 1 instead of collapsing to 0,
and the classifier's two hidden FC layers are 512 wide instead of 4096 (pool5 is 1x1x512
there, so 4096-wide layers would be mostly dead weight). The conv part is unchanged.

``init="paper"``: Glorot-uniform weights and zero biases, the scheme the paper reports training
every configuration from scratch with; ``init="torch"`` keeps torch's defaults. With
``norm="bn"`` (not in the paper; Handbook §11.2.3) each conv is followed by BatchNorm, before the
activation (``bn_position="before"``, the conv then has no bias) or after it; the legacy
``batch_norm=True/False`` flag means norm="bn"/"none". ``width`` scales all conv widths and the
hidden FC width (1.0 = the paper).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from cnnlab.models.base import (
    ImageClassifier,
    check_choice,
    check_common,
    check_norm,
    check_positive_int,
    check_probability,
    check_width,
    conv_block,
    layer_bias,
    norm_act,
    resolve_batch_norm,
    resolve_stem,
    scale_width,
    too_small,
)
from cnnlab.nn.activations import check_activation
from cnnlab.nn.dropout import Dropout
from cnnlab.nn.layers import conv_out_size
from cnnlab.registry import MODELS

M = "M"  # a 2x2/2 max-pool in a configuration list
CONFIGS: dict[str, list[int | str]] = {
    "A": [64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, M],
    "B": [64, 64, M, 128, 128, M, 256, 256, M, 512, 512, M, 512, 512, M],
    "D": [64, 64, M, 128, 128, M, 256, 256, 256, M, 512, 512, 512, M, 512, 512, 512, M],
    "E": [64, 64, M, 128, 128, M, *[256] * 4, M, *[512] * 4, M, *[512] * 4, M],
    # Case study's small VGG (BASELINES model 5): 32-32-pool-64-64-pool-128-128-pool.
    "small": [32, 32, M, 64, 64, M, 128, 128, M],
}
PAPER = "Simonyan & Zisserman 2015, ICLR; Handbook §3.2.2"


class VGG(ImageClassifier):
    """A VGG-style net from a configuration list and the hidden FC widths."""

    def __init__(
        self,
        *,
        arch: str,
        config: Sequence[int | str],
        fc_widths: Sequence[int],
        num_classes: int,
        in_chans: int,
        input_size: int,
        activation: str,
        batch_norm: bool,
        fc_batch_norm: bool,
        dropout: float,
        ceil_mode: bool,
        init: str,
        paper: str = PAPER,
        bn_position: str = "before",
        **extra_cfg: object,
    ) -> None:
        super().__init__(
            arch=arch,
            num_classes=num_classes,
            in_chans=in_chans,
            input_size=input_size,
            paper=paper,
            fixed_size=True,
            **extra_cfg,
        )
        layers: list[nn.Module] = []
        chans, side = in_chans, input_size
        for item in config:
            if item == M:
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=ceil_mode))
                side = conv_out_size(side, 2, 2, ceil_mode=ceil_mode)
                continue
            norm = "bn" if batch_norm else "none"
            layers.append(
                conv_block(
                    chans, item, 3, activation=activation, norm=norm, bn_position=bn_position
                )
            )
            chans = int(item)
        if side < 1:
            raise too_small(arch, input_size, 2 ** config.count(M), "try stem='small'")
        self.features = nn.Sequential(*layers)
        self.classifier = self._make_classifier(
            chans * side * side, fc_widths, activation, fc_batch_norm, dropout, bn_position
        )
        self.head = nn.Linear(fc_widths[-1] if fc_widths else chans * side * side, num_classes)
        if init == "paper":
            self._glorot_init()

    @staticmethod
    def _make_classifier(
        in_features: int,
        widths: Sequence[int],
        activation: str,
        bn: bool,
        dropout: float,
        bn_position: str = "before",
    ) -> nn.Sequential:
        """Hidden FC layers: Linear -> [BatchNorm1d] -> act -> Dropout for each width.

        With ``bn_position="after"`` the BatchNorm1d follows the activation instead.
        """
        norm = "bn" if bn else "none"
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        for i, w in enumerate(widths):
            layers[f"fc{i + 1}"] = nn.Linear(in_features, w, bias=layer_bias(norm, bn_position))
            for name, module in norm_act(w, activation, norm, bn_position, dims=1):
                layers[f"{name}{i + 1}"] = module
            layers[f"drop{i + 1}"] = Dropout(dropout)
            in_features = w
        return nn.Sequential(layers)

    @torch.no_grad()
    def _glorot_init(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        x = self.features(x).flatten(1)  # (B, 512, s, s) -> (B, 512*s*s); 25088 at 224
        return self.classifier(x)


def _build_vgg(
    arch: str,
    config: str,
    *,
    num_classes: int,
    in_chans: int,
    input_size: int,
    activation: str,
    norm: str,
    bn_position: str,
    dropout: float,
    stem: str,
    classifier_width: int | None,
    width: float,
    init: str,
) -> VGG:
    check_common(num_classes, in_chans, input_size)
    check_activation(activation)
    norm, bn_position = check_norm(norm, bn_position)
    check_choice("init", init, ("paper", "torch"))
    check_width(width)
    stem = resolve_stem(stem, input_size)
    if classifier_width is None:
        classifier_width = scale_width(4096 if stem == "imagenet" else 512, width)
    check_positive_int("classifier_width", classifier_width)
    layers = [item if item == M else scale_width(int(item), width) for item in CONFIGS[config]]
    return VGG(
        arch=arch,
        config=layers,
        fc_widths=(classifier_width, classifier_width),
        num_classes=num_classes,
        in_chans=in_chans,
        input_size=input_size,
        activation=activation,
        batch_norm=norm == "bn",
        fc_batch_norm=False,
        dropout=check_probability("dropout", dropout),
        ceil_mode=stem == "small",
        init=init,
        bn_position=bn_position,
        norm=norm,
        stem=stem,
        vgg_config=config,
        width=width,
    )


def _register_vgg(name: str, config: str, summary: str) -> None:
    def builder(
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        input_size: int = 224,
        activation: str = "relu",
        batch_norm: bool | None = None,
        dropout: float = 0.5,
        stem: str = "auto",
        classifier_width: int | None = None,
        width: float = 1.0,
        init: str = "paper",
        norm: str = "none",
        bn_position: str = "before",
    ) -> VGG:
        return _build_vgg(
            name,
            config,
            num_classes=num_classes,
            in_chans=in_chans,
            input_size=input_size,
            activation=activation,
            norm=resolve_batch_norm(batch_norm, norm, "none"),
            bn_position=bn_position,
            dropout=dropout,
            stem=stem,
            classifier_width=classifier_width,
            width=width,
            init=init,
        )

    builder.__name__ = builder.__qualname__ = name
    builder.__doc__ = (
        f"{summary}\n\nstem: 'imagenet' (floor pools, 4096-wide FCs), 'small' (ceil-mode pools, "
        "512-wide FCs) or 'auto' (imagenet from 96 px up). width scales every conv and hidden FC "
        "width; classifier_width sets the hidden FC width outright. init: 'paper' (Glorot "
        "uniform) or 'torch'. norm: 'none' or 'bn' (BatchNorm after every conv; batch_norm=True "
        "is the legacy spelling); bn_position: 'before' or 'after' the activation."
    )
    MODELS.register(name)(builder)


_register_vgg(
    "vgg11", "A", "VGG-11, configuration A (Simonyan & Zisserman 2015); 132,863,336 params"
)
_register_vgg(
    "vgg13", "B", "VGG-13, configuration B (Simonyan & Zisserman 2015); 133,047,848 params"
)
_register_vgg(
    "vgg16", "D", "VGG-16, configuration D (Simonyan & Zisserman 2015); 138,357,544 params"
)
_register_vgg(
    "vgg19", "E", "VGG-19, configuration E (Simonyan & Zisserman 2015); 143,667,240 params"
)


@MODELS.register("vgg_small")
def vgg_small(
    *,
    num_classes: int = 10,
    in_chans: int = 1,
    input_size: int = 28,
    activation: str = "relu",
    batch_norm: bool | None = None,
    dropout: float = 0.5,
    norm: str = "bn",
    bn_position: str = "before",
) -> VGG:
    """The case study's small VGG (BASELINES model 5): 944,810 params at 1x28x28, 10 classes.

    Six 3x3 convs (32-32-pool-64-64-pool-128-128-pool), then FC 512 and FC 128, each as
    Linear (no bias) -> BatchNorm1d -> act -> Dropout, then FC C. Convs are followed by
    BatchNorm (no conv bias) when ``norm="bn"`` (default); ``norm="none"`` drops both the 2-d
    and the 1-d BatchNorms (the layers then get biases). ``bn_position="after"`` puts each BN
    after the activation (layers keep their biases). ``batch_norm`` is the legacy flag for
    norm. Torch default init.
    """
    check_common(num_classes, in_chans, input_size)
    check_activation(activation)
    norm, bn_position = check_norm(resolve_batch_norm(batch_norm, norm, "bn"), bn_position)
    if input_size < 8:
        raise too_small("vgg_small", input_size, 8)
    return VGG(
        arch="vgg_small",
        config=CONFIGS["small"],
        fc_widths=(512, 128),
        num_classes=num_classes,
        in_chans=in_chans,
        input_size=input_size,
        activation=activation,
        batch_norm=norm == "bn",
        fc_batch_norm=norm == "bn",
        dropout=check_probability("dropout", dropout),
        ceil_mode=False,
        init="torch",
        paper="mini VGG of the Fashion-MNIST case study (seed 004; BASELINES model 5)",
        bn_position=bn_position,
        norm=norm,
    )
