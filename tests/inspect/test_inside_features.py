"""Layer listing, feature-map hooks, top-k images, sparsity and the distributed view, each
against a brute-force or hand computation (Handbook §3.1.2-3.1.3)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnlab.data.loader import Normalizer
from cnnlab.inspect.features import (
    activation_sparsity,
    distributed_view,
    feature_maps,
    pick_channels,
    top_k_activations,
)
from cnnlab.inspect.layers import default_map_layer, list_layers
from cnnlab.models import create_model


def small_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 6, 3), nn.ReLU(),
        nn.Flatten(), nn.Linear(6 * 3 * 3, 3),
    )  # fmt: skip


def no_hooks(model: nn.Module) -> bool:
    return all(
        not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks
        for m in model.modules()
    )


def test_list_layers_names_types_and_shapes():
    entries = list_layers(small_net(), (1, 12, 12))
    got = [(e.name, e.type, e.output_shape) for e in entries]
    assert got == [
        ("0", "Conv2d", (4, 10, 10)), ("1", "ReLU", (4, 10, 10)), ("2", "MaxPool2d", (4, 5, 5)),
        ("3", "Conv2d", (6, 3, 3)), ("4", "ReLU", (6, 3, 3)), ("5", "Flatten", (54,)),
        ("6", "Linear", (3,)),
    ]  # fmt: skip
    assert [e.is_spatial for e in entries] == [True] * 5 + [False] * 2


def test_list_layers_includes_containers_after_their_children():
    model = create_model("resnet20", num_classes=10, in_chans=1, input_size=28, width=0.25)
    names = [e.name for e in list_layers(model, (1, 28, 28))]
    assert names.index("layer1.0.conv1.conv") < names.index("layer1.0") < names.index("layer1")
    assert default_map_layer(model, (1, 28, 28)) == "layer3"  # outermost module of the maps
    google = create_model("googlenet", num_classes=10, in_chans=1, input_size=28, width=0.25)
    assert default_map_layer(google, (1, 28, 28)) == "inception5b"  # whole module, all branches


def test_feature_maps_hooks_do_not_change_outputs_and_are_removed():
    net = small_net().train()
    x = torch.randn(5, 1, 12, 12)
    with torch.no_grad():
        before = net(x)
    maps = feature_maps(net, "1", x)
    torch.testing.assert_close(maps, torch.relu(net[0](x)).detach())
    assert no_hooks(net) and net.training and all(m.training for m in net.modules())
    with torch.no_grad():
        torch.testing.assert_close(net(x), before, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"layer '6' outputs shape \(5, 3\), not \(B, C, h, w\)"):
        feature_maps(net, "6", x)
    with pytest.raises(ValueError, match=r"no layer 'conv'"):
        feature_maps(net, "conv", x)
    assert no_hooks(net)


def test_feature_maps_apply_the_transform_to_uint8_images():
    net = small_net()
    raw = torch.randint(0, 256, (3, 1, 12, 12), dtype=torch.uint8)
    norm = Normalizer((0.5,), (0.25,))
    maps = feature_maps(net, "0", raw, transform=norm)
    expected = net[0]((raw.float() / 255 - 0.5) / 0.25).detach()
    torch.testing.assert_close(maps, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"images are torch.uint8: pass a transform"):
        feature_maps(net, "0", raw)


@pytest.mark.parametrize(("layer", "channel"), [("3", 2), ("1", 0), ("6", 1)])
def test_top_k_matches_brute_force(layer, channel):
    net = small_net()
    x = torch.randn(50, 1, 12, 12, generator=torch.Generator().manual_seed(1))
    top = top_k_activations(net, layer, channel, x, k=9, batch_size=7)
    # brute force: the whole set at once, per-image maximum of the channel, sorted
    with torch.no_grad():
        idx = int(layer)
        out = net[: idx + 1](x)[:, channel].reshape(50, -1)
    values, flat = out.max(dim=1)
    order = values.argsort(descending=True)[:9]
    assert top.indices.tolist() == order.tolist()
    torch.testing.assert_close(top.values, values[order])
    width = 1 if out.shape[1] == 1 else int(out.shape[1] ** 0.5)
    rows, cols = flat[order] // width, flat[order] % width
    assert top.positions.tolist() == torch.stack([rows, cols], 1).tolist()


def test_top_k_with_fewer_images_than_k_and_bad_channel():
    net = small_net()
    x = torch.randn(4, 1, 12, 12)
    assert len(top_k_activations(net, "3", 0, x, k=9, batch_size=3).indices) == 4
    with pytest.raises(ValueError, match=r"channel 6 out of range for layer '3'"):
        top_k_activations(net, "3", 6, x)
    assert no_hooks(net)


def test_sparsity_of_a_relu_on_a_known_input():
    # 37 of 100 inputs are negative and 3 exactly zero: ReLU zeroes 40%.
    x = torch.arange(1, 101, dtype=torch.float32)
    x[:37] *= -1
    x[37:40] = 0
    net = nn.Sequential(nn.Identity(), nn.ReLU())
    rows = activation_sparsity(net, x.reshape(4, 1, 5, 5), batch_size=3)
    assert [(r.name, r.type, r.fraction, r.numel) for r in rows] == [("1", "ReLU", 0.4, 100)]
    # eps counts near-zeros of a smooth activation: |tanh(a)| <= 0.1 for |a| <= atanh(0.1)
    smooth = nn.Sequential(nn.Tanh())
    y = torch.tensor([-1.0, -0.05, 0.0, 0.08, 0.5, 2.0]).reshape(1, 1, 2, 3)
    rows = activation_sparsity(smooth, y, eps=0.1)
    assert rows[0].fraction == pytest.approx(3 / 6)


def test_sparsity_counts_every_call_and_default_layers_of_a_zoo_model():
    relu = nn.ReLU()
    shared = nn.Sequential(relu, nn.Identity(), relu)  # the same module runs twice
    rows = activation_sparsity(shared, -torch.ones(2, 1, 3, 3), layers=["0"])
    assert rows[0].numel == 2 * 2 * 9 and rows[0].fraction == 1.0
    model = create_model("nin", num_classes=10, in_chans=1, input_size=28)
    rows = activation_sparsity(model, torch.randn(2, 1, 28, 28))
    assert [r.name for r in rows] == [f"features.block{b}.act{i}" for b in (1, 2, 3) for i in
                                      range(3)]  # fmt: skip
    assert all(0 <= r.fraction <= 1 for r in rows) and no_hooks(model)


def test_distributed_view_channels_are_seeded_and_fires_match_brute_force():
    assert pick_channels(64, 4, seed=3) == pick_channels(64, 4, seed=3)
    assert len(set(pick_channels(64, 4, seed=3))) == 4
    net = small_net()
    x = torch.randn(6, 1, 12, 12)
    view = distributed_view(net, "1", x, n_channels=2, matrix_channels=4, seed=5)
    assert view.channels == pick_channels(4, 2, seed=5)
    assert view.matrix_channels[:2] == view.channels and sorted(view.matrix_channels) == [
        0,
        1,
        2,
        3,
    ]
    with torch.no_grad():
        maps = torch.relu(net[0](x))
    torch.testing.assert_close(view.maps, maps[:, view.channels])
    peaks = maps[:, view.matrix_channels].amax(dim=(2, 3))
    torch.testing.assert_close(view.peaks, peaks)
    expected = (peaks > 0) & (peaks >= 0.5 * peaks.amax(dim=0))
    assert torch.equal(view.fires, expected)
    active = (maps[:, view.channels] > 0).float().mean(dim=(2, 3))
    torch.testing.assert_close(view.active_fraction, active)


def test_distributed_view_on_a_many_to_many_pattern():
    """Images x channels by construction: channel c is positive exactly on images {c, c + 1}."""
    maps = -torch.ones(4, 3, 2, 2)
    for c in range(3):
        maps[c : c + 2, c, 0, 0] = 1.0 + c
    net = nn.Sequential(nn.Identity())
    view = distributed_view(net, "0", maps, n_channels=3, matrix_channels=3, seed=0)
    fires = view.fires[:, torch.tensor(view.matrix_channels).argsort()]  # column c = channel c
    expected = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 1, 1], [0, 0, 1]], dtype=torch.bool)
    assert torch.equal(fires, expected)
