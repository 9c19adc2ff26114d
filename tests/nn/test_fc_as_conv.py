"""FC layers as convolutions (Handbook §2.6; Part D.1): ``linear_to_conv`` is exact."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnlab.nn import linear_to_conv


def integer_valued_(module: nn.Module, seed: int) -> nn.Module:
    """Small integer weights: float64 sums of them are exact in any order, so == is fair."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randint(-3, 4, p.shape, generator=gen).to(p))
    return module


def int_input(*shape: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(-4, 5, shape, generator=gen).double()


def test_linear_after_conv_map_is_a_global_conv() -> None:
    fc = integer_valued_(nn.Linear(8 * 5 * 6, 16).double(), seed=1)
    conv = linear_to_conv(fc, (8, 5, 6))
    assert conv.kernel_size == (5, 6) and conv.out_channels == 16
    x = int_input(3, 8, 5, 6)
    out = conv(x)
    assert out.shape == (3, 16, 1, 1)
    assert torch.equal(out.flatten(1), fc(x.flatten(1)))


def test_linear_after_linear_is_a_1x1_conv() -> None:
    fc = integer_valued_(nn.Linear(40, 12).double(), seed=2)
    conv = linear_to_conv(fc, 40)
    assert conv.kernel_size == (1, 1)
    x = int_input(4, 40, seed=3)
    assert torch.equal(conv(x.view(4, 40, 1, 1)).flatten(1), fc(x))


def test_converted_head_slides_over_bigger_maps() -> None:
    # Fully-convolutional use: on a larger map the converted layer gives one output per
    # position, and each equals the FC layer applied to that window.
    fc = integer_valued_(nn.Linear(2 * 3 * 3, 5, bias=False).double(), seed=4)
    conv = linear_to_conv(fc, (2, 3, 3))
    x = int_input(1, 2, 5, 5, seed=5)
    out = conv(x)
    assert out.shape == (1, 5, 3, 3)
    assert torch.equal(out[0, :, 1, 2], fc(x[:, :, 1:4, 2:5].flatten(1))[0])


def test_vgg16_fc6_as_7x7_conv_shape() -> None:
    # Handbook §2.6: pool5 7x7x512 -> FC-4096 is a 7x7x512x4096 conv giving 1x1x4096.
    fc6 = nn.Linear(7 * 7 * 512, 4096, device="meta")
    conv = linear_to_conv(fc6, (512, 7, 7))
    assert tuple(conv.weight.shape) == (4096, 512, 7, 7)
    assert conv(torch.empty(1, 512, 7, 7, device="meta")).shape == (1, 4096, 1, 1)


def test_shape_mismatch_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"holds 100 values but the Linear expects 50"):
        linear_to_conv(nn.Linear(50, 2), (4, 5, 5))
    with pytest.raises(ValueError, match="in_shape must be C or"):
        linear_to_conv(nn.Linear(50, 2), (50, 1))
