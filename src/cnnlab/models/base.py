"""The zoo's common model interface and option checks (docs/architecture.md: adding a model).

Every zoo model splits into ``forward_features(x) -> (B, D)``, everything up to the vector the
final classifier sees, and ``head`` (normally ``nn.Linear(D, num_classes)``), with
``forward(x) == head(forward_features(x))``. Center loss, CAM, feature fusion and fine-tuning
build on that split.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from cnnlab.nn.activations import make_activation
from cnnlab.nn.layers import ConvBNAct

#: ``stem="auto"`` picks the ImageNet stem from this input side up, the small-input stem below.
#: ImageNet stems shrink the image 4x (stride-4 conv, or stride 2 + pool) before anything else;
#: below ~96 px that throws away most of a 28/32 px image (and AlexNet's stem needs >= 67 px).
IMAGENET_STEM_MIN_SIZE = 96

STEMS = ("auto", "imagenet", "small")

#: Model options for batch normalisation (Handbook §11.2.3): none or BN after each weight layer,
#: placed before the activation (the handbook's advice, default) or after it.
NORMS = ("none", "bn")
BN_POSITIONS = ("before", "after")


class ImageClassifier(nn.Module):
    """Base class: ``forward = head o forward_features``, plus ``default_cfg`` metadata."""

    head: nn.Module

    def __init__(
        self,
        *,
        arch: str,
        num_classes: int,
        in_chans: int,
        input_size: int,
        paper: str,
        fixed_size: bool,
        **extra_cfg: Any,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.input_size = input_size
        # fixed_size: an FC layer sized from input_size follows the conv part, so only
        # input_size x input_size images fit; global-pooling nets accept any size.
        self.fixed_size = fixed_size
        self.default_cfg: dict[str, Any] = {
            "arch": arch,
            "input_size": input_size,
            "in_chans": in_chans,
            "num_classes": num_classes,
            "paper": paper,
            **extra_cfg,
        }

    @property
    def num_features(self) -> int:
        """D, the width of the vector fed into the head."""
        return int(self.head.in_features)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a clear error when ``x`` is not a (B, in_chans, H, W) batch this model takes."""
        if not isinstance(x, torch.Tensor):  # e.g. an FX proxy while tracing: nothing to check
            return
        name = self.default_cfg["arch"]
        side = self.input_size
        want = f"(B, {self.in_chans}, {side}, {side})" if self.fixed_size else "(B, C, H, W)"
        if x.dim() != 4:
            raise ValueError(f"{name} expects a 4-D batch {want}, got shape {tuple(x.shape)}")
        if x.shape[1] != self.in_chans:
            raise ValueError(
                f"{name} was built for in_chans={self.in_chans} but got {x.shape[1]} channels "
                f"(input shape {tuple(x.shape)})"
            )
        if self.fixed_size and tuple(x.shape[2:]) != (side, side):
            raise ValueError(
                f"{name} was built for input_size={side} (its FC size depends on it) but got "
                f"{tuple(x.shape[2:])} images; rebuild it with input_size matching the data"
            )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(
        self, x: torch.Tensor, return_features: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits; with ``return_features`` also the (B, D) features the head saw. Tasks that
        need features (center loss, L-Softmax) ask for them here rather than calling
        ``forward_features`` directly, so the call goes through wrappers such as DDP."""
        features = self.forward_features(x)
        logits = self.head(features)
        return (logits, features) if return_features else logits

    def reset_classifier(self, num_classes: int) -> None:
        """Swap in a fresh ``Linear(D, num_classes)`` head (fine-tuning, Handbook §11.2.5)."""
        check_positive_int("num_classes", num_classes)
        ref = next(self.head.parameters())
        self.head = nn.Linear(self.num_features, num_classes, device=ref.device, dtype=ref.dtype)
        self.num_classes = num_classes
        self.default_cfg["num_classes"] = num_classes


def check_positive_int(option: str, value: object) -> int:
    """``value`` if it is an int >= 1, else a ValueError naming ``option``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{option} must be a positive integer, got {value!r}")
    return value


def check_choice(option: str, value: object, choices: Sequence[object]) -> Any:
    """``value`` if it is one of ``choices``, else a ValueError listing them."""
    if value not in choices:
        raise ValueError(f"{option} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def check_probability(option: str, value: object) -> float:
    """``value`` if it is a number in [0, 1), else a ValueError (dropout rates)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"{option} must be a number in [0, 1), got {value!r}")
    return float(value)


def check_width(width: object) -> float:
    """``width`` if it is a positive number (a channel-width multiplier), else a ValueError."""
    if isinstance(width, bool) or not isinstance(width, (int, float)) or width <= 0:
        raise ValueError(f"width must be a positive number, got {width!r}")
    return float(width)


def scale_width(channels: int, width: float, multiple: int = 1) -> int:
    """``channels * width`` rounded to a positive multiple of ``multiple`` (exact at width 1)."""
    return max(multiple, round(channels * width / multiple) * multiple)


def resolve_stem(stem: str, input_size: int) -> str:
    """Map ``stem`` ("auto" | "imagenet" | "small") to the concrete stem for ``input_size``."""
    check_choice("stem", stem, STEMS)
    if stem == "auto":
        return "imagenet" if input_size >= IMAGENET_STEM_MIN_SIZE else "small"
    return stem


def check_common(num_classes: int, in_chans: int, input_size: int) -> None:
    """Validate the three options every builder takes."""
    check_positive_int("num_classes", num_classes)
    check_positive_int("in_chans", in_chans)
    check_positive_int("input_size", input_size)


def too_small(arch: str, input_size: int, need: int, hint: str = "") -> ValueError:
    """The error for an input side that collapses a feature map to nothing."""
    extra = f"; {hint}" if hint else ""
    return ValueError(f"{arch}: input_size={input_size} is too small (needs >= {need}){extra}")


def check_norm(norm: object, bn_position: object) -> tuple[str, str]:
    """Validate the ``norm`` ("none" | "bn") and ``bn_position`` ("before" | "after") options."""
    return check_choice("norm", norm, NORMS), check_choice("bn_position", bn_position, BN_POSITIONS)


def resolve_batch_norm(batch_norm: bool | None, norm: str, default: str) -> str:
    """Map the legacy ``batch_norm`` flag onto ``norm`` (they must agree when both are given)."""
    if batch_norm is None:
        return norm
    legacy = "bn" if batch_norm else "none"
    if norm != default and norm != legacy:
        raise ValueError(f"batch_norm={batch_norm!r} contradicts norm={norm!r}; set only norm")
    return legacy


def layer_bias(norm: str, bn_position: str) -> bool:
    """Whether a conv/linear layer keeps its bias: not when BN follows it directly (redundant)."""
    return not (norm == "bn" and bn_position == "before")


def norm_act(
    channels: int, activation: str | None, norm: str, bn_position: str, *, dims: int = 2
) -> list[tuple[str, nn.Module]]:
    """The (name, module) pairs after a weight layer of width ``channels``: BN and activation.

    ``norm="bn"`` adds ``BatchNorm{dims}d`` before the activation (``bn_position="before"``,
    Handbook §11.2.3) or after it; the activation gets ``channels`` (per-channel PReLU, Maxout).
    """
    bn_cls = nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d
    act = [] if activation is None else [("act", make_activation(activation, channels=channels))]
    if norm != "bn":
        return act
    bn = [("bn", bn_cls(channels))]
    return bn + act if bn_position == "before" or activation is None else act + bn


def conv_block(
    in_chans: int,
    out_chans: int,
    kernel_size: int,
    stride: int = 1,
    *,
    activation: str | None,
    norm: str = "bn",
    bn_position: str = "before",
) -> ConvBNAct:
    """``ConvBNAct`` (same-size padding) whose activation knows its width; BN placed by option.

    Module names stay ``conv``, ``bn``, ``act`` whatever the order, so checkpoints keep their keys.
    """
    bn_first = norm == "bn" and (bn_position == "before" or activation is None)
    block = ConvBNAct(
        in_chans, out_chans, kernel_size, stride, batch_norm=bn_first, activation=None
    )
    if activation is not None:
        block.add_module("act", make_activation(activation, channels=out_chans))
    if norm == "bn" and not bn_first:
        block.add_module("bn", nn.BatchNorm2d(out_chans))
    return block
