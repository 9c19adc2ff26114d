"""Filter (channel) pruning that physically shrinks the network (Handbook §4.2, Table 4.1).

Criteria, higher = more important (a channel with the lowest score goes first):

- ``l1`` (Li et al. 2017): ``sum |W_n,:,:,:|`` of the filter;
- ``apoz`` (Hu et al. 2016; Part E item 22): 1 - APoZ, where APoZ is the mean fraction of zero
  post-ReLU activations of the channel over images and positions (data driven);
- ``taylor`` (Molchanov et al. 2017; Part E item 22): ``|mean over batch and positions of
  a * dL/da|`` of the post-activation map, averaged over batches, then l2-normalised per layer.

Pruning keeps removing the lowest-scoring channels until a fraction ``ratio`` of each prunable
layer's original channels (``scope: layer``) or of all of them (``scope: global``, scores
l2-normalised per layer so they compare) is gone, over ``iterations`` rounds with fine-tuning
in between. Which convs are prunable, and how BN/next layers are sliced, is decided by
:mod:`cnnlab.compression.channel_graph` (inside a ResNet basic block: the inner conv only).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.compression.channel_graph import ChannelGroup, prunable_groups, remove_channels
from cnnlab.compression.state import CompressState
from cnnlab.compression.steps import (
    COMPRESSION,
    Step,
    check_choice,
    check_fraction,
    check_int,
)

CRITERIA = ("l1", "apoz", "taylor")
SCOPES = ("layer", "global")


def l1_scores(model: nn.Module, groups: list[ChannelGroup]) -> dict[str, torch.Tensor]:
    return {g.conv: model.get_submodule(g.conv).weight.detach().abs().sum(dim=(1, 2, 3)).cpu()
            for g in groups}  # fmt: skip


def _hook_point(g: ChannelGroup, criterion: str) -> str | None:
    """APoZ reads the post-activation map; Taylor the post-activation map if there is one,
    else the conv output itself (e.g. the first half of a low-rank pair)."""
    if criterion == "apoz":
        return g.act
    return g.act or g.conv


def _hook_acts(model: nn.Module, groups: list[ChannelGroup], store: dict, criterion: str):
    handles = []
    for g in groups:

        def hook(_m, _inp, out, conv=g.conv):
            store[conv] = out

        point = _hook_point(g, criterion)
        handles.append(model.get_submodule(point).register_forward_hook(hook))
    return handles


def activation_scores(
    model: nn.Module, groups: list[ChannelGroup], batches: list, criterion: str
) -> dict[str, torch.Tensor]:
    """APoZ-based (1 - APoZ) or Taylor scores per channel over ``batches`` (eval mode);
    groups without a hook point (APoZ with no ReLU after the conv) get no scores."""
    groups = [g for g in groups if _hook_point(g, criterion) is not None]
    store: dict[str, torch.Tensor] = {}
    sums = {g.conv: torch.zeros(model.get_submodule(g.conv).out_channels) for g in groups}
    handles = _hook_acts(model, groups, store, criterion)
    was = model.training
    model.eval()
    try:
        for x, y in batches:
            if criterion == "apoz":
                with torch.no_grad():
                    model(x)
                for conv, a in store.items():  # (B, C, H, W) -> (C,) zero fraction
                    sums[conv] += (a == 0).float().mean(dim=(0, 2, 3)).cpu()
                continue
            loss = F.cross_entropy(model(x), y)
            convs = list(store)
            grads = torch.autograd.grad(loss, [store[c] for c in convs])
            for conv, g in zip(convs, grads, strict=True):
                sums[conv] += (store[conv].detach() * g).mean(dim=(0, 2, 3)).abs().cpu()
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    scores = {c: s / max(len(batches), 1) for c, s in sums.items()}
    if criterion == "apoz":
        return {c: 1 - s for c, s in scores.items()}
    return {c: s / s.norm().clamp_min(1e-12) for c, s in scores.items()}


def channel_scores(model, groups, criterion: str, batches: list) -> dict[str, torch.Tensor]:
    if criterion == "l1":
        return l1_scores(model, groups)
    return activation_scores(model, groups, batches, criterion)


def choose_removals(
    scores: dict[str, torch.Tensor], quota: dict[str, int], scope: str, total: int,
    min_channels: int = 1,
) -> dict[str, torch.Tensor]:  # fmt: skip
    """Channel indices to remove per conv: ``quota[conv]`` lowest per layer, or ``total``
    lowest overall (per-layer l2-normalised scores), never leaving fewer than ``min_channels``."""
    if scope == "layer":
        return {c: s.argsort()[: max(0, min(quota[c], len(s) - min_channels))]
                for c, s in scores.items()}  # fmt: skip
    pool = [(float(v / s.norm().clamp_min(1e-12)), c, i)
            for c, s in scores.items() for i, v in enumerate(s)]  # fmt: skip
    pool.sort()
    left = {c: len(s) for c, s in scores.items()}
    out: dict[str, list[int]] = {c: [] for c in scores}
    for _, c, i in pool:
        if total <= 0:
            break
        if left[c] > min_channels:
            out[c].append(i)
            left[c] -= 1
            total -= 1
    return {c: torch.tensor(v, dtype=torch.long) for c, v in out.items()}


def prune_filters(
    state: CompressState, ctx: Any, *, criterion: str, ratio: float, iterations: int,
    finetune_epochs: int, scope: str, batches: int, min_channels: int,
) -> dict[str, Any]:  # fmt: skip
    """The filter-pruning loop on ``state.model`` (in place); per-layer channel counts."""
    groups = prunable_groups(state.model, ctx.input_size)
    if not groups:
        ctx.log("prune_channels: no prunable conv in this model; nothing removed")
        return {"prunable": []}
    original = {g.conv: state.model.get_submodule(g.conv).out_channels for g in groups}
    data = ctx.sample_batches(batches) if criterion != "l1" else []
    for i in range(1, iterations + 1):
        groups = prunable_groups(state.model, ctx.input_size)
        current = {g.conv: state.model.get_submodule(g.conv).out_channels for g in groups}
        frac = ratio * i / iterations
        quota = {c: math.floor(original[c] * frac) - (original[c] - current[c]) for c in current}
        total = math.floor(sum(original.values()) * frac) - sum(original[c] - current[c]
                                                                for c in current)  # fmt: skip
        scores = channel_scores(state.model, groups, criterion, data)
        removals = choose_removals(scores, quota, scope, total, min_channels)
        for g in groups:
            drop = set(removals[g.conv].tolist()) if g.conv in removals else set()
            if drop:
                keep = torch.tensor([j for j in range(current[g.conv]) if j not in drop])
                remove_channels(state.model, g, keep)
        state.sync_encodings()
        ctx.finetune(state, finetune_epochs)
        ctx.log(f"prune_channels: iteration {i}/{iterations}, {criterion} criterion")
    final = {g.conv: state.model.get_submodule(g.conv).out_channels for g in groups}
    return {"channels": {c: [original[c], final[c]] for c in original}, "criterion": criterion}


@COMPRESSION.register("prune_channels")
def prune_channels(
    *, criterion: str = "l1", ratio: float = 0.5, iterations: int = 1, finetune_epochs: int = 1,
    scope: str = "layer", batches: int = 8, min_channels: int = 1,
) -> Step:  # fmt: skip
    """Filter pruning (l1 / APoZ / Taylor) that removes channels and shrinks BN + next layer."""
    options = {
        "criterion": check_choice("criterion", criterion, CRITERIA),
        "ratio": check_fraction("ratio", ratio),
        "iterations": check_int("iterations", iterations, 1),
        "finetune_epochs": check_int("finetune_epochs", finetune_epochs),
        "scope": check_choice("scope", scope, SCOPES),
        "batches": check_int("batches", batches, 1),
        "min_channels": check_int("min_channels", min_channels, 1),
    }

    def apply(state: CompressState, ctx: Any) -> dict[str, Any]:
        return prune_filters(state, ctx, **options)

    return Step("prune_channels", options, apply)
