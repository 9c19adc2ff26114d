"""Which conv filters can be removed physically, and the surgery that removes them (§4.2).

Removing output channel c of a conv means slicing everything that sees channel c: the BN
after it, and the input channels of the layers that consume it (a conv's ``weight[:, c]``; for
a Linear after a flatten, the block of ``H*W`` columns that came from channel c). The model is
traced with ``torch.fx`` and, from each conv, the data flow is followed through channel-wise
operations (BatchNorm, parameter-free activations, pooling, dropout, flatten). A conv is
prunable only if *every* path ends in such consumers; any other use (a residual addition, a
concatenation, the model output) makes it unprunable. In a ResNet basic block this leaves
exactly the inner conv (conv1's outputs = conv2's inputs): the outputs that enter the residual
addition keep their width, so the shortcut (identity or option-A padding) still fits.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from cnnlab.compression.arch import set_submodule
from cnnlab.compression.int8 import Logits
from cnnlab.compression.state import CompressionError
from cnnlab.nn.dropout import Dropout

_PASS_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.Hardtanh, nn.Sigmoid, nn.Tanh, nn.GELU,
    nn.SiLU, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d,
    nn.Dropout, nn.Dropout2d, nn.Identity, Dropout,
)  # fmt: skip
_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.Hardtanh, nn.GELU, nn.SiLU)
_PASS_FUNCTIONS = {F.relu, torch.relu, F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d,
                   F.dropout, torch.sigmoid, torch.tanh}  # fmt: skip
_PASS_METHODS = {"relu", "sigmoid", "tanh", "contiguous"}


@dataclass
class ChannelGroup:
    """A prunable conv, the BNs it feeds and the layers that consume its channels."""

    conv: str
    bns: list[str] = field(default_factory=list)
    act: str | None = None  # first activation module after it (APoZ / Taylor hook point)
    consumers: list[tuple[str, int]] = field(default_factory=list)  # (name, columns/channel)


class _LeafTracer(fx.Tracer):
    """Treat every module without children as a leaf (custom activations, dropout, ...)."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return next(m.children(), None) is None or super().is_leaf_module(m, qualname)


def _trace(model: nn.Module, input_size: tuple[int, int, int]) -> fx.GraphModule:
    root = Logits(model)
    try:
        graph = _LeafTracer().trace(root)
    except Exception as err:  # data-dependent control flow and the like
        raise CompressionError(
            f"prune_channels: torch.fx cannot trace {type(model).__name__} to find which "
            f"channels can be removed ({str(err).strip().splitlines()[0] if str(err) else err!r})"
        ) from err
    gm = fx.GraphModule(root, graph)
    was = model.training
    model.eval()
    with torch.no_grad():
        p = next(model.parameters())
        ShapeProp(gm).propagate(torch.zeros(1, *input_size, dtype=p.dtype, device=p.device))
    model.train(was)
    return gm


def _is_flatten(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        m = modules[node.target]
        return isinstance(m, nn.Flatten) and m.start_dim == 1 and m.end_dim == -1
    start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
    is_flat = (node.op == "call_method" and node.target == "flatten") or (
        node.op == "call_function" and node.target is torch.flatten
    )
    return is_flat and start == 1 and len(node.args) <= 2 and "end_dim" not in node.kwargs


def _is_pass(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules[node.target], _PASS_MODULES)
    if node.op == "call_function":
        return node.target in _PASS_FUNCTIONS
    return node.op == "call_method" and node.target in _PASS_METHODS


def _follow(start: fx.Node, modules: dict[str, nn.Module], group: ChannelGroup) -> bool:
    """Walk the users of ``start``'s output; fill ``group``; False if a use blocks pruning."""
    stack: list[tuple[fx.Node, int]] = [(start, 0)]  # (node, H*W once flattened, else 0)
    while stack:
        node, hw = stack.pop()
        for user in node.users:
            mod = modules.get(user.target) if user.op == "call_module" else None
            if isinstance(mod, nn.BatchNorm2d) and not hw:
                group.bns.append(user.target)
                stack.append((user, 0))
            elif _is_flatten(user, modules) and not hw:
                shape = node.meta["tensor_meta"].shape  # (1, C, H, W)
                stack.append((user, int(shape[2] * shape[3]) if len(shape) == 4 else 1))
            elif _is_pass(user, modules):
                if isinstance(mod, _ACTIVATIONS) and group.act is None and not hw:
                    group.act = user.target
                stack.append((user, hw))
            elif type(mod) is nn.Conv2d and not hw and mod.groups == 1 and user.args[0] is node:
                group.consumers.append((user.target, 0))
            elif type(mod) is nn.Linear and hw:
                group.consumers.append((user.target, hw))
            else:
                return False
    return bool(group.consumers)


def prunable_groups(model: nn.Module, input_size: tuple[int, int, int]) -> list[ChannelGroup]:
    """Every conv whose output channels can be removed, with what must be sliced along."""
    gm = _trace(model, input_size)
    modules = dict(gm.named_modules())
    groups = []
    for node in gm.graph.nodes:
        if node.op != "call_module" or type(modules[node.target]) is not nn.Conv2d:
            continue
        if modules[node.target].groups != 1:
            continue
        group = ChannelGroup(conv=node.target.removeprefix("net."))
        if _follow(node, modules, group):
            group.bns = [b.removeprefix("net.") for b in group.bns]
            group.act = group.act.removeprefix("net.") if group.act else None
            group.consumers = [(n.removeprefix("net."), hw) for n, hw in group.consumers]
            groups.append(group)
    return groups


@torch.no_grad()
def remove_channels(model: nn.Module, group: ChannelGroup, keep: torch.Tensor) -> None:
    """Keep only output channels ``keep`` of ``group.conv`` (in place), slicing BNs/consumers."""
    keep = torch.as_tensor(keep, dtype=torch.long).sort().values
    conv = model.get_submodule(group.conv)
    device = conv.weight.device
    new = nn.Conv2d(
        conv.in_channels,
        len(keep),
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
    )
    new.weight.copy_(conv.weight[keep])
    if conv.bias is not None:
        new.bias.copy_(conv.bias[keep])
    set_submodule(model, group.conv, new.to(device))
    for name in group.bns:
        bn = model.get_submodule(name)
        sliced = nn.BatchNorm2d(len(keep), bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
        for attr in ("weight", "bias", "running_mean", "running_var"):
            if getattr(bn, attr) is not None:
                getattr(sliced, attr).copy_(getattr(bn, attr)[keep])
        if bn.num_batches_tracked is not None:
            sliced.num_batches_tracked.copy_(bn.num_batches_tracked)
        set_submodule(model, name, sliced.to(device))
    for name, hw in group.consumers:
        set_submodule(model, name, _slice_consumer(model.get_submodule(name), keep, hw))


def _slice_consumer(layer: nn.Module, keep: torch.Tensor, hw: int) -> nn.Module:
    if hw == 0:  # a conv: drop input channels
        new = nn.Conv2d(len(keep), layer.out_channels, layer.kernel_size, layer.stride,
                        layer.padding, layer.dilation, bias=layer.bias is not None,
                        padding_mode=layer.padding_mode)  # fmt: skip
        new.weight.copy_(layer.weight[:, keep])
    else:  # a linear after flatten: channel c owns columns c*hw .. c*hw + hw - 1
        cols = (keep[:, None] * hw + torch.arange(hw)).reshape(-1)
        new = nn.Linear(len(cols), layer.out_features, bias=layer.bias is not None)
        new.weight.copy_(layer.weight[:, cols])
    if layer.bias is not None:
        new.bias.copy_(layer.bias)
    return new.to(layer.weight.device)
