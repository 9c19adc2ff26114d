"""Filter pruning that removes channels physically (Handbook §4.2)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cnnlab.compression.channel_graph import prunable_groups, remove_channels
from cnnlab.compression.channel_pruning import (
    activation_scores,
    choose_removals,
    l1_scores,
    prune_filters,
)
from cnnlab.compression.state import CompressState


@torch.no_grad()
def _kill(model, conv: str, bn: str | None, channels: list[int]) -> None:
    """Make ``channels`` contribute exactly nothing: zero filter, and a BN that maps 0 to 0."""
    c = torch.tensor(channels)
    model.get_submodule(conv).weight[c] = 0
    if bn is not None:
        model.get_submodule(bn).bias[c] = 0
        model.get_submodule(bn).running_mean[c] = 0


def _remove_and_compare(model, input_size, dead: dict[str, list[int]]) -> None:
    x = torch.randn(3, *input_size)
    before = model(x)
    groups = {g.conv: g for g in prunable_groups(model, input_size)}
    for conv, channels in dead.items():
        group = groups[conv]
        # the l1 criterion ranks the dead filters last, so they are the ones removed
        chosen = choose_removals(l1_scores(model, [group]), {conv: len(channels)}, "layer", 0)
        assert sorted(chosen[conv].tolist()) == sorted(channels)
        n = model.get_submodule(conv).out_channels
        remove_channels(model, group, torch.tensor([i for i in range(n) if i not in channels]))
        assert model.get_submodule(conv).out_channels == n - len(channels)
    torch.testing.assert_close(model(x), before, atol=1e-6, rtol=1e-5)


def test_bn_then_linear_after_flatten(make_model):
    model, _ = make_model("cnn1", size=12, norm="bn")  # conv-BN-pool-act-flatten-FC
    groups = prunable_groups(model, (1, 12, 12))
    assert [(g.conv, g.bns, g.consumers) for g in groups] == [("conv", ["bn"], [("head", 25)])]
    _kill(model, "conv", "bn", [3, 7, 30])
    _remove_and_compare(model, (1, 12, 12), {"conv": [3, 7, 30]})
    assert model.head.in_features == 29 * 25


def test_vgg_conv_to_conv_and_conv_to_classifier(make_model):
    model, _ = make_model("vgg_small", size=16)  # last map 2x2: 4 columns per channel in fc1
    groups = {g.conv: g for g in prunable_groups(model, (1, 16, 16))}
    assert groups["features.7.conv"].consumers == [("classifier.fc1", 4)]
    assert groups["features.0.conv"].consumers == [("features.1.conv", 0)]
    _kill(model, "features.1.conv", "features.1.bn", [0, 5])
    _kill(model, "features.7.conv", "features.7.bn", [2, 100, 127])
    _remove_and_compare(model, (1, 16, 16),
                        {"features.1.conv": [0, 5], "features.7.conv": [2, 100, 127]})  # fmt: skip
    assert model.classifier.fc1.in_features == 125 * 4


def test_residual_blocks_prune_only_the_inner_conv(make_model):
    model, _ = make_model("resnet20", size=12, width=0.5)
    groups = prunable_groups(model, (1, 12, 12))
    assert sorted(g.conv for g in groups) == sorted(
        f"layer{s}.{b}.conv1.conv" for s in (1, 2, 3) for b in range(3)
    )  # conv2 feeds the residual addition, the stem feeds a shortcut: both keep their width
    _kill(model, "layer2.1.conv1.conv", "layer2.1.conv1.bn", [1, 4])
    _remove_and_compare(model, (1, 12, 12), {"layer2.1.conv1.conv": [1, 4]})
    assert model.layer2[1].conv2.conv.in_channels == 14


def test_data_driven_scores_find_a_dead_channel(make_model, fake_ctx):
    model, _ = make_model("cnn1", size=12, norm="bn")
    _kill(model, "conv", "bn", [5])
    groups = prunable_groups(model, (1, 12, 12))
    batches = fake_ctx.sample_batches(2)
    apoz = activation_scores(model, groups, batches, "apoz")["conv"]
    assert apoz[5] == 0 and apoz.argmin() == 5  # its post-ReLU map is all zeros
    taylor = activation_scores(model, groups, batches, "taylor")["conv"]
    assert taylor[5] == 0 and float(taylor.norm()) == pytest.approx(1.0)


def test_taylor_matches_an_independent_computation(make_model, fake_ctx):
    model, _ = make_model("cnn1", size=12, norm="bn")
    groups = prunable_groups(model, (1, 12, 12))
    (x, y), = fake_ctx.sample_batches(1)  # fmt: skip
    kept = {}
    handle = model.act.register_forward_hook(lambda m, i, o: kept.setdefault("a", o))
    kept_a = None
    try:
        out = model(x)
        kept_a = kept["a"]
        kept_a.retain_grad()
        F.cross_entropy(out, y).backward()
    finally:
        handle.remove()
    theta = (kept_a * kept_a.grad).mean(dim=(0, 2, 3)).abs().detach()
    expected = theta / theta.norm()
    got = activation_scores(model, groups, [(x, y)], "taylor")["conv"]
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_prune_filters_shrinks_every_prunable_layer(scope, make_model, fake_ctx):
    model, spec = make_model("vgg_small", size=12)
    state = CompressState(model, spec)
    params = sum(p.numel() for p in model.parameters())
    out = prune_filters(state, fake_ctx, criterion="l1", ratio=0.5, iterations=2,
                        finetune_epochs=1, scope=scope, batches=1, min_channels=1)  # fmt: skip
    channels = out["channels"]
    total_before = sum(a for a, _ in channels.values())
    total_after = sum(b for _, b in channels.values())
    assert total_after == total_before - total_before // 2
    if scope == "layer":
        assert all(b == a - a // 2 for a, b in channels.values())
    assert sum(p.numel() for p in state.model.parameters()) < params
    assert state.model(torch.randn(2, 1, 12, 12)).shape == (2, 4)
