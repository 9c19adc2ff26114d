"""Receptive fields from the summary against an empirical measurement (Handbook §3.1.1).

With every weight positive, a positive input and average pooling only (max pooling would route
the gradient to one element), the input gradient of the centre output position is non-zero
exactly on the receptive field of that position. Its extent must equal the summary's value.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.inspect.summary import summary


def conv(cin, cout, k, s=1, d=1):
    return nn.Conv2d(cin, cout, k, s, padding=d * (k - 1) // 2, dilation=d)


def empirical_rf(net: nn.Module, in_ch: int, size: int) -> tuple[int, int]:
    """Extent (rows, cols) of the non-zero input gradient of the centre output position."""
    net = copy.deepcopy(net).double()
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(0.1 if p.dim() > 1 else 0.0)  # positive weights, zero biases
    x = torch.ones(1, in_ch, size, size, dtype=torch.float64, requires_grad=True)
    out = net(x)
    h, w = out.shape[-2:]
    out[0, :, h // 2, w // 2].sum().backward()  # all channels: the union over branches
    mask = x.grad[0].abs().sum(0) > 0
    rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
    if rows.min() == 0 or rows.max() == size - 1 or cols.min() == 0 or cols.max() == size - 1:
        raise AssertionError("receptive field clipped by the image border: use a larger input")
    return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)


class Residual(nn.Module):
    """Basic residual block with the addition in forward code; optional strided shortcut."""

    def __init__(self, c, stride=1, shortcut="identity"):
        super().__init__()
        self.conv1, self.conv2 = conv(c, c, 3, stride), conv(c, c, 3)
        self.relu = nn.ReLU()
        self.proj = conv(c, c, 1, stride) if shortcut == "conv" else None
        self.stride = stride

    def forward(self, x):
        out = self.conv2(self.relu(self.conv1(x)))
        # projection shortcut, or "option A": subsample by slicing
        short = self.proj(x) if self.proj is not None else x[:, :, :: self.stride, :: self.stride]
        return self.relu(out + short)


class TwoBranch(nn.Module):
    """Inception-style: 1x1 branch, 3x3-3x3 branch and a pooled branch, concatenated."""

    def __init__(self, c):
        super().__init__()
        self.b1 = conv(c, 2, 1)
        self.b2 = nn.Sequential(conv(c, 2, 3), nn.ReLU(), conv(2, 2, 3))
        self.b3 = nn.Sequential(nn.AvgPool2d(3, 1, 1), conv(c, 2, 1))

    def forward(self, x):
        return torch.cat([self.b1(x), self.b2(x), self.b3(x)], dim=1)


class GatedSE(nn.Module):
    """Squeeze-and-excitation style gate: every output position sees the whole image."""

    def __init__(self, c):
        super().__init__()
        self.conv = conv(c, c, 3)
        self.fc = nn.Linear(c, c)

    def forward(self, x):
        y = self.conv(x)
        gate = torch.sigmoid(self.fc(y.mean((2, 3))))  # (B, C)
        return y * gate.view(*gate.shape, 1, 1)  # (B, C) -> (B, C, 1, 1), broadcast


NETS = {
    "sequential": (nn.Sequential(conv(2, 3, 3), nn.ReLU(), conv(3, 3, 5), nn.ReLU()), 2, 33, 7),
    "strided": (
        nn.Sequential(conv(1, 2, 5, 2), nn.ReLU(), nn.AvgPool2d(3, 2), conv(2, 2, 3, 2)),
        1,
        97,
        None,
    ),
    "dilated": (nn.Sequential(conv(1, 2, 3, d=2), conv(2, 2, 3, d=4), conv(2, 1, 3)), 1, 41, 15),
    "residual": (nn.Sequential(conv(1, 2, 3), Residual(2), Residual(2)), 1, 33, 11),
    "residual_strided_conv": (nn.Sequential(conv(1, 2, 3), Residual(2, 2, "conv")), 1, 33, None),
    "residual_strided_slice": (nn.Sequential(conv(1, 2, 3), Residual(2, 2, "slice")), 1, 33, None),
    "concat": (nn.Sequential(conv(1, 2, 3), TwoBranch(2), conv(6, 1, 1)), 1, 33, 7),
    "concat_then_conv": (nn.Sequential(TwoBranch(1), conv(6, 2, 3, 2), TwoBranch(2)), 1, 33, None),
}


@pytest.mark.parametrize("key", sorted(NETS))
def test_summary_rf_equals_gradient_extent(key):
    net, in_ch, size, expected = NETS[key]
    info = summary(net, (in_ch, size, size))
    measured = empirical_rf(net, in_ch, size)
    assert (info.receptive_field, info.receptive_field) == measured
    if expected is not None:  # hand-computed with the recurrence
        assert info.receptive_field == expected
    if key != "concat_then_conv":  # that one ends in torch.cat, which is not a module (row)
        assert info.layers[-1].receptive_field == info.receptive_field


def test_strided_residual_jumps():
    # conv3: r=3, j=1; block conv1 3/2: r=5, j=2; conv2 3/1: r=5+2*2=9; shortcut 1x1/2: r=3, j=2
    net = nn.Sequential(conv(1, 2, 3), Residual(2, 2, "conv"))
    info = summary(net, (1, 16, 16))
    rows = {row.name: (row.receptive_field, row.jump) for row in info.layers}
    assert rows["1.conv1"] == (5, 2)
    assert rows["1.conv2"] == (9, 2)
    assert rows["1.proj"] == (3, 2)
    assert (info.receptive_field, info.jump) == (9, 2)
    assert not info.notes  # equal jumps: nothing to report


def test_global_gate_sees_whole_input():
    net = GatedSE(2)
    info = summary(net, (2, 12, 12))
    x = torch.ones(1, 2, 12, 12, requires_grad=True)
    out = net(x)
    out[0, :, 6, 6].sum().backward()
    assert bool((x.grad[0].abs().sum(0) > 0).all())  # every input pixel matters
    assert info.receptive_field == 12
    assert info.jump == 1  # still a stride-1 map: the global gate is only broadcast
    assert [row.receptive_field for row in info.layers] == [3, 12]  # conv, fc


def test_adaptive_pool_not_global_uses_window():
    net = nn.Sequential(conv(1, 1, 3), nn.AdaptiveAvgPool2d(4), conv(1, 1, 3))
    info = summary(net, (1, 8, 8))
    # 8 -> 4 is kernel = stride = 2: r = 3 + 1*1 = 4, j = 2; then r = 4 + 2*2 = 8
    assert [(r.receptive_field, r.jump) for r in info.layers] == [(3, 1), (4, 2), (8, 2)]


def test_unequal_jumps_noted():
    class Mixed(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = conv(1, 1, 3, 2), conv(1, 1, 3, 4)

        def forward(self, x):  # (B,1,16,16) -> a: 8x8 (j=2), b: 4x4 (j=4) upsampled to 8x8
            return self.a(x) + F.interpolate(self.b(x), scale_factor=2.0)

    info = summary(Mixed(), (1, 16, 16))
    assert info.jump == 4  # the larger one, as documented
    assert any("jumps" in n for n in info.notes)
    assert any("interpolate" in n for n in info.notes)


class ChannelLRN(nn.Module):
    """Cross-channel normalisation that pools over a reshaped (B, 1, C, H*W) tensor."""

    def forward(self, x):
        b, c = x.shape[:2]
        sq = F.pad(x.pow(2).reshape(b, 1, c, -1), (0, 0, 1, 1))  # (B, C, H, W) -> (B, 1, C+2, HW)
        sums = F.avg_pool2d(sq, (3, 1), stride=1).reshape(x.shape)  # back to (B, C, H, W)
        return x / (2 + 1e-2 * sums)


def test_reshaping_leaf_module_keeps_its_input_field():
    net = nn.Sequential(conv(1, 4, 3), ChannelLRN(), conv(4, 2, 3))
    info = summary(net, (1, 21, 21))
    assert [row.receptive_field for row in info.layers] == [3, 3, 5]
    assert empirical_rf(net, 1, 21) == (5, 5)
    assert len(info.notes) == 1 and "ChannelLRN" in info.notes[0]


class DataDependent(nn.Module):
    """Python control flow on tensor values: torch.fx cannot trace this model."""

    def __init__(self):
        super().__init__()
        self.a, self.b = conv(1, 2, 3), conv(2, 2, 3)

    def forward(self, x):
        y = self.a(x)
        if float(y.detach().sum()) > -1e9:  # always true, but only known at run time
            y = y + self.b(y)
        return y


def test_untraceable_model_follows_data_flow():
    with pytest.raises(Exception, match=r"(?i)symbolically traced|proxy"):
        torch.fx.symbolic_trace(DataDependent())
    info = summary(DataDependent(), (1, 21, 21))
    assert info.receptive_field == 5 == empirical_rf(DataDependent(), 1, 21)[0]
    assert not info.notes
