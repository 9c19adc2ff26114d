"""Network In Network (Lin, Chen, Yan 2013, arXiv:1312.4400 / ICLR 2014; Handbook §3.2.3).

The CIFAR-10 model of the paper (widths from the authors' released Caffe model): three
"mlpconv" blocks, each a k x k convolution followed by two 1x1 convolutions (a small MLP slid
over the image), every convolution followed by the activation:

    block1: 5x5 conv 192 (pad 2) -> 1x1 160 -> 1x1 96  -> 3x3/2 max-pool -> dropout 0.5
    block2: 5x5 conv 192 (pad 2) -> 1x1 192 -> 1x1 192 -> 3x3/2 max-pool -> dropout 0.5
    block3: 3x3 conv 192 (pad 1) -> 1x1 192 -> 1x1 C    -> global average pooling

At 3x32x32 the maps are 32 -> 16 -> 8 (pools round up, as in Caffe) and there is no fully
connected layer: each of the C maps of the last 1x1 conv is a class's confidence map and its
spatial mean is that class's score (966,986 parameters for C = 10). The paper uses max pooling
after every mlpconv block; the released Caffe file averages in the second pool.

The zoo contract wants ``forward(x) == head(forward_features(x))``. Two ways are offered:

- ``classifier="conv"`` (default, the paper): the last 1x1 conv and its activation stay in
  block3, ``forward_features`` returns the globally averaged class maps (B, C) and ``head`` is
  ``nn.Identity()``. ``class_maps(x)`` gives the (B, C, h, w) maps themselves (CAM, §3.2.3).
- ``classifier="linear"``: block3 stops after its first 1x1 conv and the last 1x1 conv becomes
  ``head = nn.Linear(192, C)`` applied after the pooling. Global average pooling and a 1x1 conv
  commute (both linear), so this is the paper's net minus the activation on the class maps,
  and a standard GAP-linear classifier (CAM by Zhou et al. 2016 applies directly).

Init (not in the paper): He normal (fan_in) weights, zero biases.
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
    check_positive_int,
    check_probability,
    too_small,
)
from cnnlab.nn.activations import check_activation, make_activation
from cnnlab.nn.dropout import Dropout
from cnnlab.nn.layers import conv_out_size
from cnnlab.registry import MODELS

PAPER = "Lin, Chen, Yan 2013, Network In Network (ICLR 2014); Handbook §3.2.3"
#: (kernel, widths of the k x k conv and the two 1x1 convs); None = num_classes.
BLOCKS: tuple[tuple[int, tuple[int, int, int | None]], ...] = (
    (5, (192, 160, 96)),
    (5, (192, 192, 192)),
    (3, (192, 192, None)),
)
CLASSIFIERS = ("conv", "linear")


class MLPConv(nn.Sequential):
    """k x k conv then 1x1 convs, each followed by the activation (an MLP slid over the map).

    Lin et al. 2013 eq. 2: every layer of the micro network is ``max(w^T f + b, 0)`` for ReLU.
    Children: ``conv0`` (k x k, "same" padding), ``act0``, ``conv1`` (1x1), ``act1``, ...
    """

    def __init__(
        self, in_chans: int, widths: Sequence[int], kernel_size: int, activation: str
    ) -> None:
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        chans = in_chans
        for i, width in enumerate(widths):
            k = kernel_size if i == 0 else 1
            layers[f"conv{i}"] = nn.Conv2d(chans, width, k, padding=(k - 1) // 2)
            layers[f"act{i}"] = make_activation(activation)
            chans = width
        super().__init__(layers)


class ClassMapClassifier(ImageClassifier):
    """Base for nets that end in class maps + global average pooling (NIN, SqueezeNet).

    Subclasses set ``features`` (ending in the class maps when ``classifier_kind == "conv"``),
    ``pool`` and ``head``, and name the class 1x1 conv by its path in ``class_conv_path``.
    """

    classifier_kind: str
    class_conv_path: tuple[str, ...]

    @property
    def num_features(self) -> int:
        """D: num_classes for the paper's class-map form (its head is the identity)."""
        if self.classifier_kind == "conv":
            return self.num_classes
        return int(self.head.in_features)

    def class_maps(self, x: torch.Tensor) -> torch.Tensor:
        """The maps whose spatial means are the features: (B, C, h, w) class maps for "conv",
        the last feature maps before the linear head for "linear"."""
        self.check_input(x)
        return self.features(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.class_maps(x)).flatten(1)  # (B, D, h, w) -> (B, D, 1, 1) -> (B, D)

    def reset_classifier(self, num_classes: int) -> None:
        """Fresh class layer for ``num_classes`` (fine-tuning, Handbook §11.2.5).

        "conv": the class 1x1 conv is replaced; "linear": the head is.
        """
        if self.classifier_kind == "linear":
            super().reset_classifier(num_classes)
            return
        check_positive_int("num_classes", num_classes)
        *parents, last = self.class_conv_path
        owner = self
        for name in parents:
            owner = getattr(owner, name)
        old = getattr(owner, last)
        new = nn.Conv2d(
            old.in_channels, num_classes, 1, device=old.weight.device, dtype=old.weight.dtype
        )
        setattr(owner, last, new)
        self.num_classes = num_classes
        self.default_cfg["num_classes"] = num_classes


class NIN(ClassMapClassifier):
    """Three mlpconv blocks with max-pool + dropout between them, then global average pooling."""

    def __init__(
        self,
        *,
        num_classes: int,
        in_chans: int,
        input_size: int,
        activation: str,
        dropout: float,
        classifier: str,
    ) -> None:
        super().__init__(
            arch="nin",
            num_classes=num_classes,
            in_chans=in_chans,
            input_size=input_size,
            paper=PAPER,
            fixed_size=False,
            classifier=classifier,
        )
        self.classifier_kind = classifier
        self.class_conv_path = ("features", "block3", "conv2")
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        chans = in_chans
        for i, (kernel, widths) in enumerate(BLOCKS):
            ws = [num_classes if w is None else w for w in widths]
            if i == len(BLOCKS) - 1 and classifier == "linear":
                ws = ws[:-1]  # the class 1x1 conv moves behind the pooling as the head
            layers[f"block{i + 1}"] = MLPConv(chans, ws, kernel, activation)
            chans = ws[-1]
            if i < len(BLOCKS) - 1:
                layers[f"pool{i + 1}"] = nn.MaxPool2d(3, 2, ceil_mode=True)
                layers[f"drop{i + 1}"] = Dropout(dropout)
        self.features = nn.Sequential(layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Identity() if classifier == "conv" else nn.Linear(chans, num_classes)
        self._he_init()

    @torch.no_grad()
    def _he_init(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)


def min_input_size() -> int:
    """Smallest side that survives both 3x3/2 ceil-mode pools (each needs a side >= 3)."""
    side = 1
    while conv_out_size(side, 3, 2, ceil_mode=True) < 3:
        side += 1
    return side


@MODELS.register("nin")
def nin(
    *,
    num_classes: int = 10,
    in_chans: int = 3,
    input_size: int = 32,
    activation: str = "relu",
    dropout: float = 0.5,
    classifier: str = "conv",
) -> NIN:
    """Network In Network, CIFAR-10 model (Lin et al. 2013): 3 mlpconv blocks + GAP, no FC.

    classifier: "conv" (paper: the last 1x1 conv with its activation gives class maps, GAP
    gives the scores, head = identity) or "linear" (that conv without activation as a Linear
    head after GAP). 966,986 params at 3x32x32 with 10 classes.
    """
    check_common(num_classes, in_chans, input_size)
    check_activation(activation)
    check_choice("classifier", classifier, CLASSIFIERS)
    if input_size < min_input_size():
        raise too_small("nin", input_size, min_input_size())
    return NIN(
        num_classes=num_classes,
        in_chans=in_chans,
        input_size=input_size,
        activation=activation,
        dropout=check_probability("dropout", dropout),
        classifier=classifier,
    )
