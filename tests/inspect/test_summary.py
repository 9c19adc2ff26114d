"""Model summary: shapes, parameters, MACs, table and dict (Handbook §2.3, §3.1.1, §3.2)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cnnlab.inspect import summary
from cnnlab.inspect.table import human


def small_net() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),  # 3x16x16 -> 8x16x16
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8),  # depthwise -> 8x16x16
        nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=4, bias=False),  # grouped -> 16x8x8
        nn.Conv2d(16, 32, 1),  # pointwise -> 32x8x8
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    )


# Hand-worked: MACs = output elements x (in_ch / groups) x kh x kw; params = weights + biases.
HAND = {
    "0": (8 * 3 * 3 * 3 + 8, (8 * 16 * 16) * 3 * 3 * 3),  # 224, 55,296
    "1": (2 * 8, 0),  # BN: gamma and beta, no MACs
    "3": (8 * 1 * 3 * 3 + 8, (8 * 16 * 16) * 1 * 3 * 3),  # depthwise: 80, 18,432
    "4": (16 * 2 * 3 * 3, (16 * 8 * 8) * 2 * 3 * 3),  # groups=4: 8/4=2 inputs; 288, 18,432
    "5": (16 * 32 + 32, (32 * 8 * 8) * 16),  # 544, 32,768
    "8": (32 * 10 + 10, 10 * 32),  # 330, 320
}


def test_hand_worked_params_and_macs():
    info = summary(small_net(), (3, 16, 16))
    rows = {row.name: row for row in info.layers}
    assert [row.name for row in info.layers] == [str(i) for i in range(9)]  # every leaf, in order
    for name, (params, macs) in HAND.items():
        assert (rows[name].params, rows[name].macs) == (params, macs), name
    assert info.params == 224 + 16 + 80 + 288 + 544 + 330 == 1482
    assert info.macs == 55_296 + 18_432 + 18_432 + 32_768 + 320 == 125_248
    assert info.trainable_params == info.params
    assert rows["4"].output_shape == (16, 8, 8)
    assert rows["7"].output_shape == (32,)
    assert info.output_shape == (10,)


def analytic_macs(model: nn.Module, x: torch.Tensor) -> int:
    """Independent count from hooks: Conv2d and Linear only, whole batch."""
    total = 0

    def hook(m, inp, out):
        nonlocal total
        if isinstance(m, nn.Conv2d):
            kh, kw = m.kernel_size
            total += out.numel() * (m.in_channels // m.groups) * kh * kw
        elif isinstance(m, nn.Linear):
            total += out.numel() * m.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    with torch.no_grad():
        model.eval()(x)
    for h in handles:
        h.remove()
    return total


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.a, self.b = nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(c, c, 3, padding=1, groups=c)

    def forward(self, x):
        return torch.relu(self.b(torch.relu(self.a(x))) + x)


def residual_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, 2), Block(6), Block(6), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(6, 4),
    )  # fmt: skip


@pytest.mark.parametrize("make", [small_net, residual_net])
@pytest.mark.parametrize("batch", [1, 3])
def test_macs_agree_with_analytic_and_flop_counter(make, batch):
    model = make()
    in_ch = model[0].in_channels
    info = summary(model, (in_ch, 20, 20), batch_size=batch)
    x = torch.randn(batch, in_ch, 20, 20)
    assert info.macs * batch == analytic_macs(model, x)
    # FlopCounterMode's own per-module breakdown (2 FLOPs per MAC), module by module
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    flops = counter.get_flop_counts()
    for row in info.layers:
        key = f"{type(model).__name__}.{row.name}"
        assert sum(flops.get(key, {}).values()) == 2 * batch * row.macs, row.name
    assert counter.get_total_flops() == 2 * batch * info.macs
    assert sum(row.macs for row in info.layers) == info.macs


def test_rows_are_leaves_and_containers_are_not():
    info = summary(residual_net(), (1, 20, 20))
    names = [row.name for row in info.layers]
    assert names == ["0", "1.a", "1.b", "2.a", "2.b", "3", "4", "5"]
    assert "1" not in names  # the block is a container (its add and relu are not MACs)


class MatmulHead(nn.Module):
    """Own parameter and a matmul in forward code: the model itself becomes a row."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.proj = nn.Parameter(torch.randn(4, 5))

    def forward(self, x):
        return torch.flatten(self.conv(x).mean((2, 3)), 1) @ self.proj  # (B,4) @ (4,5)


def test_matmul_in_forward_code_is_counted():
    info = summary(MatmulHead(), (1, 6, 6), batch_size=2)
    assert [row.name for row in info.layers] == ["conv", ""]
    root = info.layers[1]
    assert (root.params, root.macs) == (4 * 5, 4 * 5)  # one (1x4)@(4x5) product per image
    assert info.layers[0].macs == 4 * 4 * 4 * 9  # 4x4x4 outputs x 1x3x3
    assert info.macs == 20 + 576
    assert "(root)" in info.format_table()


def test_shared_module_called_twice():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 3, padding=1)

        def forward(self, x):
            return self.conv(self.conv(x))

    info = summary(Twice(), (2, 8, 8))
    assert [(r.name, r.call_index) for r in info.layers] == [("conv", 1), ("conv", 2)]
    assert [r.receptive_field for r in info.layers] == [3, 5]
    assert info.params == 2 * 2 * 9 + 2  # shared weights counted once
    assert info.macs == 2 * (2 * 8 * 8 * 2 * 9)
    assert "conv (call 2)" in info.format_table()


def test_to_dict_is_json_with_exact_keys():
    info = summary(small_net(), (3, 16, 16))
    d = json.loads(json.dumps(info.to_dict()))
    assert set(d) == {"params", "macs", "layers", "input_size", "trainable_params", "output_shape"}
    keys = {"name", "type", "output_shape", "params", "macs", "receptive_field", "jump"}
    assert all(set(layer) == keys for layer in d["layers"])
    assert d["layers"][4] == {
        "name": "4", "type": "Conv2d", "output_shape": [16, 8, 8], "params": 288,
        "macs": 18432, "receptive_field": 1 + 2 + 2 + 2, "jump": 2,
    }  # fmt: skip
    assert d["input_size"] == [3, 16, 16]
    assert d["output_shape"] == [10]


def test_non_square_input_gives_pairs():
    info = summary(small_net(), (3, 12, 20))
    assert info.layers[0].receptive_field == 3  # square kernel: still one number
    assert info.layers[-1].receptive_field == (12, 20)  # global: the input's sides
    assert info.to_dict()["layers"][-1]["receptive_field"] == [12, 20]


def test_table_lists_every_layer_and_totals():
    info = summary(residual_net(), (1, 20, 20))
    table = str(info)
    assert table == info.format_table()
    for row in info.layers:
        assert f"  {row.name}  " in table
    assert f"Total params:       {human(info.params)} ({info.params:,})" in table
    assert f"({info.macs:,};" in table
    widths = {len(line) for line in table.splitlines()[:3]}
    assert len(widths) == 1  # rules and header are aligned


def test_human_units():
    assert human(1_199_882) == "1.20M"
    assert human(11_992_448) == "11.99M"
    assert human(15_470_264_320) == "15.47G"
    assert human(999) == "999"
    assert human(999_999) == "1.00M"
    assert human(1_500) == "1.50K"


def test_model_is_left_unchanged():
    model = small_net()  # has a BatchNorm2d: its running statistics must not move
    model.train()
    model[3].eval()  # a mixed state must come back exactly
    modes = {name: m.training for name, m in model.named_modules()}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    summary(model, (3, 16, 16), batch_size=2)
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert torch.equal(torch.get_rng_state(), rng)
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks


def test_batchnorm_in_train_mode_with_batch_one_works():
    # BatchNorm1d refuses batch 1 in training mode; the summary runs in eval mode.
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 4), nn.BatchNorm1d(4)).train()
    info = summary(model, (1, 4, 4))
    assert info.params == 16 * 4 + 4 + 8
    assert model.training


def test_frozen_parameters():
    model = small_net()
    for p in model[0].parameters():
        p.requires_grad_(False)
    info = summary(model, (3, 16, 16))
    assert info.params - info.trainable_params == 224
    assert "Non-trainable:      224" in info.format_table()


class UnfoldAvgPool(nn.Module):
    """A hand-written pooling layer (unfold based) that declares kernel_size and stride."""

    def __init__(self, kernel_size, stride):
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride

    def forward(self, x):
        b, c, h, w = x.shape
        k, s = self.kernel_size, self.stride
        cols = nn.functional.unfold(x, k, stride=s)  # (B, C*k*k, L)
        out = cols.view(b, c, k * k, -1).mean(2)  # (B, C, L)
        return out.view(b, c, (h - k) // s + 1, (w - k) // s + 1)


def test_custom_window_module_uses_its_attributes():
    ours = summary(nn.Sequential(nn.Conv2d(1, 1, 3), UnfoldAvgPool(3, 2)), (1, 15, 15))
    ref = summary(nn.Sequential(nn.Conv2d(1, 1, 3), nn.AvgPool2d(3, 2)), (1, 15, 15))
    assert [(r.receptive_field, r.jump, r.output_shape) for r in ours.layers] == [
        (r.receptive_field, r.jump, r.output_shape) for r in ref.layers
    ]


def test_bad_arguments_have_clear_errors():
    with pytest.raises(ValueError, match=r"input_size must be \(channels, height, width\)"):
        summary(small_net(), (16, 16))
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        summary(small_net(), (3, 16, 16), batch_size=0)
    with pytest.raises(TypeError, match=r"must be a torch\.nn\.Module"):
        summary("resnet18", (3, 16, 16))
    with pytest.raises(
        ValueError, match=r"Sequential failed on an input of shape \(1, 1, 16, 16\)"
    ):
        summary(small_net(), (1, 16, 16))  # 1 channel into a 3-channel conv
