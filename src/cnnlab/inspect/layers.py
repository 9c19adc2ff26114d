"""Naming and hooking a model's layers for "looking inside" (Handbook §3.1.2-3.1.3).

Every tool in ``cnnlab.inspect`` names a layer by its qualified module name (``"layer2.1.conv1"``,
``"inception4a"``, ``"features.block3"``), the names ``list_layers`` prints. Hooks are always
removed and train/eval flags restored when a tool returns, also after an error.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from cnnlab.inspect.receptive import iter_tensors


@dataclass(frozen=True)
class LayerEntry:
    """One inspectable layer: qualified name, class name, output shape without the batch."""

    name: str
    type: str
    output_shape: tuple[int, ...]
    is_leaf: bool

    @property
    def is_spatial(self) -> bool:
        """True for (C, h, w) outputs with more than one position (feature maps, CAM layers)."""
        return len(self.output_shape) == 3 and self.output_shape[1] * self.output_shape[2] > 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "output_shape": list(self.output_shape),
            "is_leaf": self.is_leaf,
        }


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run ``model`` in eval mode (BN running stats, no dropout); restore every flag after."""
    flags = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield model
    finally:
        for module, training in flags.items():
            module.training = training


def get_layer(model: nn.Module, name: str) -> nn.Module:
    """The sub-module called ``name``; an unknown name lists close matches."""
    modules = dict(model.named_modules())
    if name and name in modules:
        return modules[name]
    close = difflib.get_close_matches(name, [n for n in modules if n], n=4, cutoff=0.5)
    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    raise ValueError(
        f"{type(model).__name__} has no layer {name!r}.{hint} "
        "List the layers with `cnnlab inspect RUN --layers` or cnnlab.inspect.layers.list_layers"
    )


def model_device(model: nn.Module) -> torch.device:
    """Where the model's parameters live (CPU for a parameter-free model)."""
    tensor = next(iter([*model.parameters(), *model.buffers()]), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def first_tensor(output: Any, where: str) -> torch.Tensor:
    """The first tensor of a module output, or a clear error."""
    tensor = next(iter_tensors(output), None)
    if tensor is None:
        raise ValueError(f"layer {where!r} returned no tensor")
    return tensor


class StopForward(Exception):
    """Raised by a hook once the wanted layer has run, to skip the rest of the network."""


@contextmanager
def capture(model: nn.Module, names: Sequence[str], *, stop: bool = False) -> Iterator[dict]:
    """Record the outputs of the named layers during forward passes inside the block.

    ``captured[name]`` holds the latest output tensor (not detached). With ``stop=True`` the
    forward pass ends (``StopForward``) as soon as every named layer has run; wrap the call in
    ``run_until``. Hooks are removed on exit.
    """
    captured: dict[str, torch.Tensor] = {}
    wanted = set(names)
    handles = []

    def hook(name: str, _module: nn.Module, _args: Any, output: Any) -> None:
        captured[name] = first_tensor(output, name)
        if stop and wanted <= captured.keys():
            raise StopForward

    for name in names:
        handles.append(get_layer(model, name).register_forward_hook(_bind(hook, name)))
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def _bind(hook: Any, name: str) -> Any:
    return lambda module, args, output: hook(name, module, args, output)


def run_until(model: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    """``model(x)``, tolerating an early ``StopForward`` from a ``capture(..., stop=True)``."""
    try:
        return model(x)
    except StopForward:
        return None


def list_layers(
    model: nn.Module, input_size: Sequence[int], *, device: torch.device | str | None = None
) -> list[LayerEntry]:
    """Every named sub-module that runs on a ``(1, *input_size)`` input, in the order it
    finishes, with its type and output shape (the ``cnnlab inspect --layers`` listing).

    Containers are listed too (after their children): an Inception module's or a residual
    stage's output is often the most useful map to look at. A module called twice is listed once.
    """
    if len(input_size) != 3 or not all(isinstance(v, int) and v > 0 for v in input_size):
        raise ValueError(f"input_size must be (channels, height, width), got {input_size!r}")
    device = torch.device(device) if device is not None else model_device(model)
    entries: dict[str, LayerEntry] = {}
    handles = []

    def hook(name: str, module: nn.Module, _args: Any, output: Any) -> None:
        tensor = next(iter_tensors(output), None)
        if tensor is not None and name not in entries:
            leaf = next(module.children(), None) is None
            entries[name] = LayerEntry(name, type(module).__name__, tuple(tensor.shape[1:]), leaf)

    for name, module in model.named_modules():
        if name:
            handles.append(module.register_forward_hook(_bind(hook, name)))
    x = torch.zeros((1, *input_size), device=device)
    try:
        with eval_mode(model), torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return list(entries.values())


POOLING = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.LPPool2d)


def default_map_layer(model: nn.Module, input_size: Sequence[int]) -> str:
    """The last non-pooling layer to finish with a spatial (C, h, w) output: the usual Grad-CAM
    layer (Selvaraju et al. use the last conv layer's rectified maps).

    When several nested modules return the same maps (a residual stage, its last block and that
    block's activation) the outermost one finishes last and is chosen, so a concatenating module
    (Inception) is taken as a whole rather than its last branch.
    """
    modules = dict(model.named_modules())
    spatial = [
        e
        for e in list_layers(model, input_size)
        if e.is_spatial and not isinstance(modules[e.name], POOLING)
    ]
    if not spatial:
        raise ValueError(f"{type(model).__name__} has no layer with a spatial (C, h, w) output")
    return spatial[-1].name


def first_conv_layer(model: nn.Module) -> str | None:
    """Name of the first ``nn.Conv2d`` in registration order (the stem), or None."""
    return next((n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)
