"""Output-size and receptive-field arithmetic (Handbook §2.3, §3.1.1, Table 3.1, Part E.1)."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from cnnlab.inspect.receptive import conv_output_size, receptive_field_of
from cnnlab.inspect.summary import summary

# --- conv_output_size ---------------------------------------------------------------------------

# Handbook Table 3.1 (Alex-Net at 227): (input, kernel, stride, padding) -> output side.
ALEXNET_ROWS = [
    ("conv1 f=11 s=4", 227, 11, 4, 0, 55),
    ("pool1 f=3 s=2", 55, 3, 2, 0, 27),
    ("conv2 f=5 p=2", 27, 5, 1, 2, 27),
    ("pool2 f=3 s=2", 27, 3, 2, 0, 13),
    ("conv3 f=3 p=1", 13, 3, 1, 1, 13),
    ("conv4 f=3 p=1", 13, 3, 1, 1, 13),
    ("conv5 f=3 p=1", 13, 3, 1, 1, 13),
    ("pool5 f=3 s=2", 13, 3, 2, 0, 6),
    ("fc6 as conv f=6", 6, 6, 1, 0, 1),
]


@pytest.mark.parametrize(("row", "size", "k", "s", "p", "expected"), ALEXNET_ROWS)
def test_conv_output_size_alexnet_table_3_1(row, size, k, s, p, expected):
    assert conv_output_size(size, k, s, p) == expected, row


def test_conv_output_size_vgg16_224_to_7():
    # Handbook Tables 3.2/3.3: 13 "same" 3x3 convs keep the size, 5 pools 2/2 halve it.
    size = 224
    for block in (2, 2, 3, 3, 3):
        for _ in range(block):
            assert conv_output_size(size, 3, 1, 1) == size
        size = conv_output_size(size, 2, 2)
    assert size == 7
    assert conv_output_size(7, 7) == 1  # fc6 seen as a 7x7 conv (Handbook §2.6)


def test_conv_output_size_seed_002_examples():
    assert conv_output_size(5, 3) == 3  # stride 1
    assert conv_output_size(5, 3, stride=2) == 2
    assert conv_output_size(5, 3, padding=1) == 5  # "same" padding
    assert conv_output_size(224, 11, 4) == 54  # 54.25 floored: why Alex-Net needs 227


@pytest.mark.parametrize("ceil_mode", [False, True])
def test_conv_output_size_matches_torch(ceil_mode):
    """Independent check: the shapes PyTorch's own layers produce."""
    combos = itertools.product([7, 8, 13], [1, 2, 3], [1, 2, 3], [0, 1], [1, 2])
    for size, k, s, p, d in combos:
        if 2 * p > k or d * (k - 1) + 1 > size + 2 * p:  # torch refuses these
            continue
        x = torch.zeros(1, 1, size, size)
        pool = nn.MaxPool2d(k, s, p, dilation=d, ceil_mode=ceil_mode)
        got = conv_output_size(size, k, s, p, d, ceil_mode=ceil_mode)
        assert got == pool(x).shape[-1], (size, k, s, p, d)
        if not ceil_mode:
            conv = nn.Conv2d(1, 1, k, s, p, dilation=d)
            assert got == conv(x).shape[-1], (size, k, s, p, d)


def test_conv_output_size_bad_input():
    with pytest.raises(ValueError, match="stride must be an integer >= 1"):
        conv_output_size(5, 3, stride=0)
    with pytest.raises(ValueError, match="does not fit"):
        conv_output_size(3, 5)
    with pytest.raises(ValueError, match="size"):
        conv_output_size(2.5, 1)


# --- receptive_field_of -------------------------------------------------------------------------


def test_receptive_field_stacked_3x3():
    # Handbook §3.1.1: r = 1 + 2 + 2 (+ 2)
    assert receptive_field_of([(3, 1)] * 2) == (5, 1)
    assert receptive_field_of([(3, 1, 1)] * 3) == (7, 1)


# Alex-Net-like chain, recurrence written out: r_l = r_{l-1} + (k-1) j_{l-1}, j_l = j_{l-1} s
ALEX_CHAIN = [
    # (kernel, stride, padding, rf, jump)
    (11, 4, 0, 1 + 10 * 1, 1 * 4),  # conv1: 11, 4
    (3, 2, 0, 11 + 2 * 4, 4 * 2),  # pool1: 19, 8
    (5, 1, 2, 19 + 4 * 8, 8),  # conv2: 51, 8
    (3, 2, 0, 51 + 2 * 8, 8 * 2),  # pool2: 67, 16
    (3, 1, 1, 67 + 2 * 16, 16),  # conv3: 99
    (3, 1, 1, 99 + 2 * 16, 16),  # conv4: 131
    (3, 1, 1, 131 + 2 * 16, 16),  # conv5: 163
    (3, 2, 0, 163 + 2 * 16, 16 * 2),  # pool5: 195, 32
]


def test_receptive_field_alexnet_chain_helper():
    for i in range(1, len(ALEX_CHAIN) + 1):
        layers = [(k, s) for k, s, _, _, _ in ALEX_CHAIN[:i]]
        assert receptive_field_of(layers) == ALEX_CHAIN[i - 1][3:]
    assert receptive_field_of([(3, 1, 2), (3, 1, 4)]) == (1 + 2 * 2 + 2 * 4, 1)  # dilation


def test_receptive_field_alexnet_chain_summary():
    layers: list[nn.Module] = []
    for k, s, p, _, _ in ALEX_CHAIN:
        is_pool = p == 0 and k == 3
        layers.append(nn.MaxPool2d(k, s) if is_pool else nn.Conv2d(1, 1, k, s, p))
    info = summary(nn.Sequential(*layers), (1, 227, 227))
    assert [(row.receptive_field, row.jump) for row in info.layers] == [r[3:] for r in ALEX_CHAIN]
    assert [row.output_shape[-1] for row in info.layers] == [55, 27, 27, 13, 13, 13, 13, 6]


def test_receptive_field_of_bad_input():
    with pytest.raises(ValueError, match="layer 1"):
        receptive_field_of([(3, 1), (3,)])
    with pytest.raises(ValueError, match="layer 0 stride"):
        receptive_field_of([(3, 0)])
