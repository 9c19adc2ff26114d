"""Architecture patches: how a compressed model's structure differs from its registered model.

Compression changes the structure (a Linear becomes two, a conv loses filters, a layer turns
binary). A saved compressed model must rebuild without pickling code, so the file stores the
model spec (``cnnlab.training.spine.build_model``) plus a list of *patches*: for every
submodule whose type or constructor arguments changed, its path and a JSON description of the
new module. ``apply_patches(build_model(spec), patches)`` gives back the structure;
the weights come from the stored tensors.

Only a fixed set of module types can be described (convolutions, linear layers, batch norm,
sequential containers, a few parameter-free activations, the binary layers); anything else is
a clear error at save time, never a silently wrong model at load time.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from cnnlab.compression.binary_layers import BinaryConv2d, BinaryLinear


class ArchitectureError(ValueError):
    """A structure that cannot be described or rebuilt; names the module path."""


def _conv_args(m: nn.Conv2d) -> dict[str, Any]:
    return {
        "in_channels": m.in_channels, "out_channels": m.out_channels,
        "kernel_size": list(m.kernel_size), "stride": list(m.stride),
        "padding": list(m.padding) if not isinstance(m.padding, str) else m.padding,
        "dilation": list(m.dilation), "groups": m.groups, "bias": m.bias is not None,
        "padding_mode": m.padding_mode,
    }  # fmt: skip


def _linear_args(m: nn.Linear) -> dict[str, Any]:
    return {
        "in_features": m.in_features,
        "out_features": m.out_features,
        "bias": m.bias is not None,
    }


def _bn_args(m: nn.modules.batchnorm._BatchNorm) -> dict[str, Any]:
    return {
        "num_features": m.num_features, "eps": m.eps, "momentum": m.momentum,
        "affine": m.affine, "track_running_stats": m.track_running_stats,
    }  # fmt: skip


def _binary_args(m: BinaryConv2d | BinaryLinear) -> dict[str, Any]:
    return {"mode": m.mode, "stochastic": m.stochastic, "binary_inputs": m.binary_inputs}


def _hardtanh_args(m: nn.Hardtanh) -> dict[str, Any]:
    return {"min_val": m.min_val, "max_val": m.max_val}


# type name -> (class, argument extractor); the binary layers first so isinstance-free lookups
# by exact type pick them rather than their nn.Conv2d / nn.Linear bases.
LEAVES: dict[str, tuple[type[nn.Module], Any]] = {
    "BinaryConv2d": (BinaryConv2d, lambda m: {**_conv_args(m), **_binary_args(m)}),
    "BinaryLinear": (BinaryLinear, lambda m: {**_linear_args(m), **_binary_args(m)}),
    "Conv2d": (nn.Conv2d, _conv_args),
    "Linear": (nn.Linear, _linear_args),
    "BatchNorm2d": (nn.BatchNorm2d, _bn_args),
    "BatchNorm1d": (nn.BatchNorm1d, _bn_args),
    "Identity": (nn.Identity, lambda m: {}),
    "ReLU": (nn.ReLU, lambda m: {}),
    "Hardtanh": (nn.Hardtanh, _hardtanh_args),
}


def describe(module: nn.Module, path: str = "") -> dict[str, Any]:
    """JSON description of ``module`` (a known leaf type or an ``nn.Sequential`` of them)."""
    kind = type(module).__name__
    if type(module) is nn.Sequential:
        return {
            "type": "Sequential",
            "children": [[n, describe(c, f"{path}.{n}")] for n, c in module.named_children()],
        }
    if kind not in LEAVES or type(module) is not LEAVES[kind][0]:
        raise ArchitectureError(
            f"module {path or '(root)'}: cannot store a {kind} in a compressed model "
            f"(known types: Sequential, {', '.join(LEAVES)})"
        )
    desc: dict[str, Any] = {"type": kind, "args": LEAVES[kind][1](module)}
    if isinstance(module, (BinaryConv2d, BinaryLinear)) and module.frozen:
        desc["frozen"] = True
    return desc


def construct(desc: dict[str, Any]) -> nn.Module:
    """Build a module (with placeholder weights) from :func:`describe`'s output."""
    kind = desc.get("type")
    if kind == "Sequential":
        return nn.Sequential(
            OrderedDict((name, construct(child)) for name, child in desc["children"])
        )
    if kind not in LEAVES:
        raise ArchitectureError(f"unknown module type {kind!r} in a compressed model")
    args = dict(desc.get("args", {}))
    for key in ("kernel_size", "stride", "padding", "dilation"):
        if isinstance(args.get(key), list):
            args[key] = tuple(args[key])
    module = LEAVES[kind][0](**args)
    if desc.get("frozen"):
        module.frozen = True
        module.alpha = torch.ones(module.weight.shape[0])
    return module


def _same(a: nn.Module, b: nn.Module) -> bool:
    kind = type(a).__name__
    if type(a) is not type(b):
        return False
    if kind in LEAVES and type(a) is LEAVES[kind][0]:
        return describe(a) == describe(b)
    return True  # same container / unknown leaf type: compared through its children


def architecture_patches(base: nn.Module, model: nn.Module) -> list[dict[str, Any]]:
    """The patches that turn ``base`` (freshly built from the spec) into ``model``'s structure."""
    patches: list[dict[str, Any]] = []

    def walk(b: nn.Module, m: nn.Module, path: str) -> None:
        b_children, m_children = dict(b.named_children()), dict(m.named_children())
        if not _same(b, m) or list(b_children) != list(m_children):
            if not path:
                raise ArchitectureError("the model's top-level type changed; cannot patch it")
            patches.append({"path": path, "module": describe(m, path)})
            return
        for name, child in m_children.items():
            walk(b_children[name], child, f"{path}.{name}" if path else name)

    walk(base, model, "")
    return patches


def set_submodule(model: nn.Module, path: str, module: nn.Module) -> None:
    """Replace the submodule at dotted ``path`` (its parent must exist)."""
    parent_path, _, name = path.rpartition(".")
    try:
        parent = model.get_submodule(parent_path) if parent_path else model
    except AttributeError:
        raise ArchitectureError(f"patch path {path!r} does not exist in the model") from None
    old = dict(parent.named_children()).get(name)
    if old is None:
        raise ArchitectureError(f"patch path {path!r} does not exist in the model")
    setattr(parent, name, module.train(old.training))  # a new module keeps the mode it replaces


def apply_patches(model: nn.Module, patches: list[dict[str, Any]]) -> nn.Module:
    """Apply :func:`architecture_patches` output to a freshly built model (in place)."""
    for patch in patches:
        set_submodule(model, patch["path"], construct(patch["module"]))
    return model
