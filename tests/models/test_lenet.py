"""LeNet-5: case-study form and the 1998 network (C3 table, subsampling, RBF output)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.models import create_model
from cnnlab.models.lenet import C3_TABLE, ConnectionTableConv2d, RBFOutput, Subsample2d
from cnnlab.nn import ScaledTanh

# LeCun et al. 1998, Table I, row by row: the C3 maps each S2 map feeds.
TABLE_I_ROWS = {
    0: {0, 4, 5, 6, 9, 10, 11, 12, 14, 15},
    1: {0, 1, 5, 6, 7, 10, 11, 12, 13, 15},
    2: {0, 1, 2, 6, 7, 8, 11, 13, 14, 15},
    3: {1, 2, 3, 6, 7, 8, 9, 12, 14, 15},
    4: {2, 3, 4, 7, 8, 9, 10, 12, 13, 15},
    5: {3, 4, 5, 8, 9, 10, 11, 13, 14, 15},
}


def nparams(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def lenet1998(**kw: object) -> nn.Module:
    return create_model("lenet5", num_classes=10, in_chans=1, variant="1998", **kw)


def test_c3_table_is_table_one() -> None:
    rows = {s2: {o for o, ins in enumerate(C3_TABLE) if s2 in ins} for s2 in range(6)}
    assert rows == TABLE_I_ROWS
    assert sum(len(ins) for ins in C3_TABLE) == 60


def test_1998_layer_parameters_match_the_paper() -> None:
    f = lenet1998().features
    got = {name: nparams(getattr(f, name)) for name in ("c1", "s2", "c3", "s4", "c5", "f6")}
    # C1 6*(25+1); S2 6*2; C3 60*25 + 16; S4 16*2; C5 120*(16*25+1); F6 84*(120+1).
    assert got == {"c1": 156, "s2": 12, "c3": 1_516, "s4": 32, "c5": 48_120, "f6": 10_164}
    # The RBF prototypes are fixed (a buffer), so the trainable total is the paper's 60,000.
    assert nparams(lenet1998()) == 60_000


def test_1998_uses_scaled_tanh_and_no_relu_or_maxpool() -> None:
    model = lenet1998()
    kinds = {type(m) for m in model.modules()}
    assert ScaledTanh in kinds and Subsample2d in kinds
    assert nn.ReLU not in kinds and nn.MaxPool2d not in kinds
    assert sum(isinstance(m, ScaledTanh) for m in model.modules()) == 6  # C1, S2, C3, S4, C5, F6


def test_connection_table_conv_equals_masked_dense_conv() -> None:
    torch.manual_seed(0)
    layer = ConnectionTableConv2d(6, C3_TABLE, 5).double()
    mask = torch.zeros(16, 6)
    for o, ins in enumerate(C3_TABLE):
        mask[o, list(ins)] = 1
    dense = layer.dense_weight()
    assert torch.equal((dense.abs().sum((2, 3)) > 0).float(), mask)
    x = torch.randn(2, 6, 14, 14, dtype=torch.float64)
    ref = F.conv2d(x, dense.detach() * mask.view(16, 6, 1, 1).double(), layer.bias.detach())
    torch.testing.assert_close(layer(x), ref)
    # Gradients of the 60 kernels equal the dense conv's gradients at the connected slots.
    dense_ref = dense.detach().clone().requires_grad_()
    F.conv2d(x, dense_ref, layer.bias.detach()).sum().backward()
    layer(x).sum().backward()
    pairs = [(o, i) for o, ins in enumerate(C3_TABLE) for i in ins]
    torch.testing.assert_close(
        layer.weight.grad, torch.stack([dense_ref.grad[o, i] for o, i in pairs])
    )


def test_subsampling_is_scaled_block_sum_plus_bias() -> None:
    layer = Subsample2d(2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([2.0, -1.0]))
        layer.bias.copy_(torch.tensor([0.5, 1.0]))
    x = torch.arange(32.0).view(1, 2, 4, 4)
    out = layer(x)
    # Top-left block of channel 0: 0+1+4+5 = 10 -> 2*10 + 0.5; channel 1: 16+17+20+21 = 74.
    assert out.shape == (1, 2, 2, 2)
    assert out[0, 0, 0, 0].item() == 20.5 and out[0, 1, 0, 0].item() == -73.0


def test_rbf_head_is_negative_squared_distance() -> None:
    head = RBFOutput(84, 10)
    assert set(head.prototypes.unique().tolist()) == {-1.0, 1.0}
    assert not list(head.parameters())
    x = torch.randn(5, 84)
    torch.testing.assert_close(head(x), -torch.cdist(x, head.prototypes).pow(2))
    # A prototype itself scores 0, the best possible, so argmax picks its class.
    assert torch.equal(head(head.prototypes).argmax(1), torch.arange(10))


def test_1998_init_bounds_follow_fan_in() -> None:
    f = lenet1998().features
    assert f.c1.weight.abs().max() <= 2.4 / 25
    assert f.c5.weight.abs().max() <= 2.4 / 400
    # C3 map 0 has 3 inputs (fan-in 75), map 15 has 6 (fan-in 150).
    w = f.c3.dense_weight()
    assert w[0].abs().max() <= 2.4 / 75 and w[15].abs().max() <= 2.4 / 150
    assert w[0].abs().max() > 2.4 / 150  # the wider bound is actually used


def test_padding_only_below_32() -> None:
    small = create_model("lenet5", num_classes=10, in_chans=1, input_size=28)
    assert small.features.pad.padding == (2, 2, 2, 2)
    assert not hasattr(create_model("lenet5", num_classes=10, in_chans=1).features, "pad")
    big = create_model("lenet5", num_classes=10, in_chans=3, input_size=40)
    assert big.features.f6.in_features == 120 * 3 * 3  # 40 -> 36 -> 18 -> 14 -> 7 -> 3
    assert big(torch.randn(2, 3, 40, 40)).shape == (2, 10)


@pytest.mark.parametrize(("in_chans", "size"), [(1, 28), (3, 32)])
def test_1998_forward_backward_and_feature_split(in_chans: int, size: int) -> None:
    model = create_model(
        "lenet5", num_classes=10, in_chans=in_chans, input_size=size, variant="1998"
    )
    x = torch.randn(2, in_chans, size, size)
    feats = model.forward_features(x)
    assert feats.shape == (2, 84)
    torch.testing.assert_close(model(x), model.head(feats), rtol=0, atol=0)
    model(x).logsumexp(1).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_1998_network_learns_with_cross_entropy_on_rbf_scores() -> None:
    torch.manual_seed(0)
    model = lenet1998(input_size=28)
    x, y = torch.randn(16, 1, 28, 28), torch.arange(16) % 10
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(30):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
