"""The handbook's convolution and pooling arithmetic (Handbook §2.3-2.4, §3.1.1; Part D.1)."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.nn import conv_out_size

KERNEL = torch.tensor([[1.0, 0, 1], [0, 1, 0], [1, 0, 1]]).view(1, 1, 3, 3)
GRID = torch.arange(1.0, 26.0).view(1, 1, 5, 5)  # the 5x5 grid 1..25, row-major


def test_worked_example_window_gives_27() -> None:
    window = torch.tensor([[1.0, 2, 3], [6, 7, 8], [9, 8, 7]]).view(1, 1, 3, 3)
    assert F.conv2d(window, KERNEL).item() == 27  # 1+3+7+9+7


def test_grid_stride_1_gives_3x3_and_first_output_35() -> None:
    out = F.conv2d(GRID, KERNEL)
    assert out.shape == (1, 1, 3, 3)
    assert out[0, 0, 0, 0].item() == 35  # 1+3+7+11+13


def test_grid_stride_2_second_output_is_45() -> None:
    out = F.conv2d(GRID, KERNEL, stride=2)
    assert out.shape == (1, 1, 2, 2)
    assert out[0, 0, 0, 1].item() == 45  # window at columns 3-5: 3+5+9+13+15


def test_padding_1_keeps_5x5() -> None:
    assert F.conv2d(GRID, KERNEL, padding=1).shape == (1, 1, 5, 5)


@pytest.mark.parametrize("f", [1, 3, 5, 7])
@pytest.mark.parametrize("size", [9, 10])
def test_same_padding_keeps_size(f: int, size: int) -> None:
    # Handbook §11.1.2: p = (f-1)/2 at stride 1 keeps the spatial size.
    x = torch.randn(1, 2, size, size)
    p = (f - 1) // 2
    assert F.conv2d(x, torch.randn(3, 2, f, f), padding=p).shape[-2:] == (size, size)
    assert conv_out_size(size, f, 1, p) == size


def test_2x2_stride_2_pooling_keeps_a_quarter() -> None:
    x = torch.randn(2, 3, 8, 8)
    assert F.max_pool2d(x, 2, 2).numel() / x.numel() == 0.25


def test_conv_out_size_matches_torch() -> None:
    for size, k, s, p, ceil in itertools.product(
        (5, 7, 13, 27, 28, 55, 224), (1, 2, 3, 5, 11), (1, 2, 4), (0, 1, 2), (False, True)
    ):
        if p > k // 2 or k > size + 2 * p:
            continue  # torch refuses these (padding above half the kernel, kernel too big)
        x = torch.empty(1, 1, size, size, device="meta")
        pooled = F.max_pool2d(x, k, s, p, ceil_mode=ceil).shape[-1]
        assert conv_out_size(size, k, s, p, ceil_mode=ceil) == pooled, (size, k, s, p, ceil)
        if not ceil:
            conved = F.conv2d(x, torch.empty(1, 1, k, k, device="meta"), stride=s, padding=p)
            assert conv_out_size(size, k, s, p) == conved.shape[-1]
    assert conv_out_size(3, 5) == 0  # the kernel does not fit


def test_table_3_1_sizes() -> None:
    # Handbook Table 3.1: 227 -conv11/4-> 55 -pool3/2-> 27 -conv5p2-> 27 -pool-> 13 -pool-> 6.
    assert conv_out_size(227, 11, 4) == 55
    assert conv_out_size(55, 3, 2) == 27
    assert conv_out_size(27, 5, 1, 2) == 27
    assert conv_out_size(27, 3, 2) == 13
    assert conv_out_size(13, 3, 2) == 6


def count_weights(*modules: nn.Module) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


def test_three_3x3_convs_vs_one_7x7() -> None:
    # Handbook §3.1.1: 3 x (C * 3*3*C) = 27 C^2 = 110,592 vs 49 C^2 = 200,704 weights at C = 64.
    c = 64
    stacked = [nn.Conv2d(c, c, 3, bias=False) for _ in range(3)]
    assert count_weights(*stacked) == 27 * c * c == 110_592
    assert count_weights(nn.Conv2d(c, c, 7, bias=False)) == 49 * c * c == 200_704


def test_three_3x3_convs_see_7x7() -> None:
    # The receptive field of one output after three 3x3 stride-1 convs is 7x7: the gradient of
    # that output reaches exactly a 7x7 input patch.
    net = nn.Sequential(*[nn.Conv2d(1, 1, 3, bias=False) for _ in range(3)])
    for conv in net:
        nn.init.constant_(conv.weight, 1.0)
    x = torch.zeros(1, 1, 15, 15, requires_grad=True)
    net(x)[0, 0, 4, 4].backward()
    rows, cols = torch.nonzero(x.grad[0, 0], as_tuple=True)
    assert (rows.min().item(), rows.max().item()) == (4, 10)
    assert (cols.min().item(), cols.max().item()) == (4, 10)


def test_seed_002_parameter_count() -> None:
    # 3 input channels x 3x3 x 192 output channels = 5,184 weights (no bias).
    assert count_weights(nn.Conv2d(3, 192, 3, bias=False)) == 5_184
