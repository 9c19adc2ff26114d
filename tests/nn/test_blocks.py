"""ConvBNAct and the option-A shortcut against hand-built equivalents."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnlab.nn import ConvBNAct, ShortcutA


def test_conv_bn_act_layout() -> None:
    block = ConvBNAct(3, 8, 3, stride=2)
    assert [type(m) for m in block] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU]
    assert block.conv.bias is None  # BN's shift makes a conv bias redundant
    assert block.conv.padding == (1, 1)
    assert block(torch.randn(2, 3, 9, 9)).shape == (2, 8, 5, 5)
    bare = ConvBNAct(3, 8, 5, batch_norm=False, activation=None)
    assert [type(m) for m in bare] == [nn.Conv2d] and bare.conv.bias is not None
    assert bare.conv.padding == (2, 2)
    assert isinstance(ConvBNAct(3, 8, 1, activation="tanh").act, nn.Tanh)


def test_shortcut_a_subsamples_and_zero_pads() -> None:
    x = torch.randn(2, 4, 7, 7)
    out = ShortcutA(4, 10, stride=2)(x)
    assert out.shape == (2, 10, 4, 4)
    torch.testing.assert_close(out[:, :4], x[:, :, ::2, ::2])
    assert torch.count_nonzero(out[:, 4:]) == 0
    assert sum(p.numel() for p in ShortcutA(4, 10, 2).parameters()) == 0
    torch.testing.assert_close(ShortcutA(4, 4, 1)(x), x)
    with pytest.raises(ValueError, match="cannot shrink"):
        ShortcutA(8, 4)
