"""Turning a trained network into a binary one (Handbook §4.4), then training it.

``binarize_model`` swaps every Conv2d / Linear for its binary form
(:mod:`cnnlab.compression.binary_layers`), copying the trained weights as the initial real
(shadow) weights. By default the **first and last weight layers stay real**, as in the
BinaryConnect/BNN/XNOR-Net papers: the first sees the raw image (few weights, large effect)
and the last produces the logits. For BNN, whose layers binarise their *inputs*, every ReLU is
replaced by Hardtanh: the sign of a post-ReLU map would be +1 almost everywhere, while the
BNN paper feeds sign() from a BN + Htanh output that is centred on zero.

The step trains the swapped model from the float weights, by default with the run's own
learning rate (``recipe: train``; binary nets need larger steps than fine-tuning to flip signs),
clipping the real weights to [-1, 1] after every step. The result is saved in the packed binary
format: 1 bit per weight plus one float32 alpha per output channel, about 1/32 of float32.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cnnlab.compression.arch import set_submodule
from cnnlab.compression.binary_layers import MODES, BinaryConv2d, BinaryLinear
from cnnlab.compression.state import CompressState, weight_modules
from cnnlab.compression.steps import COMPRESSION, Step, check_choice, check_int


@torch.no_grad()
def _binary_copy(m: nn.Module, mode: str, stochastic: bool, binary_inputs: bool | None):
    opts = {"mode": mode, "stochastic": stochastic, "binary_inputs": binary_inputs}
    if isinstance(m, nn.Conv2d):
        new = BinaryConv2d(
            m.in_channels,
            m.out_channels,
            m.kernel_size,
            m.stride,
            m.padding,
            m.dilation,
            m.groups,
            m.bias is not None,
            m.padding_mode,
            **opts,
        )
    else:
        new = BinaryLinear(m.in_features, m.out_features, m.bias is not None, **opts)
    new.weight.copy_(m.weight.clamp(-1, 1))
    if m.bias is not None:
        new.bias.copy_(m.bias)
    return new.to(m.weight.device)


def binarize_model(
    model: nn.Module, mode: str = "binaryconnect", *, keep_first: bool = True,
    keep_last: bool = True, stochastic: bool = False, binary_inputs: bool | None = None,
) -> list[str]:  # fmt: skip
    """Swap weight layers for binary ones in place; returns the swapped layer names."""
    check_choice("mode", mode, MODES)
    layers = [(n, m) for n, m in weight_modules(model) if type(m) in (nn.Conv2d, nn.Linear)]
    if keep_first:
        layers = layers[1:]
    if keep_last:
        layers = layers[:-1]
    for name, m in layers:
        set_submodule(model, name, _binary_copy(m, mode, stochastic, binary_inputs))
    inputs_binary = mode == "bnn" if binary_inputs is None else binary_inputs
    if inputs_binary:
        relus = [n for n, m in model.named_modules() if type(m) is nn.ReLU]
        for name in relus:
            set_submodule(model, name, nn.Hardtanh())
    return [n for n, _ in layers]


@COMPRESSION.register("binarize")
def binarize(
    *, mode: str = "binaryconnect", epochs: int = 1, keep_first: bool = True,
    keep_last: bool = True, stochastic: bool = False, binary_inputs: bool | None = None,
    recipe: str = "train",
) -> Step:  # fmt: skip
    """Binary weights (BinaryConnect / BNN / XNOR-Net), trained with straight-through grads."""
    options = {
        "mode": check_choice("mode", mode, MODES), "epochs": check_int("epochs", epochs),
        "keep_first": bool(keep_first), "keep_last": bool(keep_last),
        "stochastic": bool(stochastic), "binary_inputs": binary_inputs,
        "recipe": check_choice("recipe", recipe, ("train", "finetune")),
    }  # fmt: skip

    def apply(state: CompressState, ctx: Any) -> dict[str, Any]:
        swapped = binarize_model(state.model, mode, keep_first=bool(keep_first),
                                 keep_last=bool(keep_last), stochastic=bool(stochastic),
                                 binary_inputs=binary_inputs)  # fmt: skip
        for name in swapped:  # one bit per weight replaces any earlier encoding
            state.encodings.pop(f"{name}.weight", None)
        ctx.log(f"binarize: {len(swapped)} layers binary ({mode})")
        history = ctx.finetune(state, epochs, recipe=recipe)
        return {"binary_layers": swapped, "test_acc": [r.get("test_acc") for r in history]}

    return Step("binarize", options, apply)
