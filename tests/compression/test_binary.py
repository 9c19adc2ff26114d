"""Binary networks (Handbook §4.4): estimators, XNOR's alpha, packed storage."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnlab.compression.binary import binarize_model
from cnnlab.compression.binary_layers import (
    BinaryConv2d,
    BinaryLinear,
    clip_binary_weights,
    sign_act_ste,
    stochastic_sign_ste,
    xnor_alpha,
)
from cnnlab.compression.state import CompressState
from cnnlab.compression.storage import load_compressed, save_compressed


def test_bnn_activation_gradient_passes_only_inside_unit_interval():
    x = torch.tensor([-2.0, -1.0, -0.5, 0.0, 0.3, 1.0, 1.5], requires_grad=True)
    y = sign_act_ste(x)
    assert y.tolist() == [-1, -1, -1, 1, 1, 1, 1]
    y.backward(torch.full_like(x, 3.0))
    assert x.grad.tolist() == [0, 3, 3, 3, 3, 3, 0]


def test_binaryconnect_weight_gradient_is_the_identity_estimator():
    torch.manual_seed(0)
    layer = BinaryLinear(5, 3, mode="binaryconnect")
    x = torch.randn(4, 5)
    layer(x).sum().backward()
    # d(sum(x @ B^T + b))/dB = column sums of x, passed unchanged to the real weights
    expected = x.sum(dim=0).expand(3, 5)
    torch.testing.assert_close(layer.weight.grad, expected)


def test_stochastic_binarisation_follows_the_hard_sigmoid():
    torch.manual_seed(0)
    w = torch.tensor([-1.5, -0.5, 0.0, 0.6]).repeat(20000, 1)
    b = stochastic_sign_ste(w)
    assert set(b.unique().tolist()) <= {-1.0, 1.0}
    p_plus = (b == 1).float().mean(dim=0)
    torch.testing.assert_close(p_plus, torch.tensor([0.0, 0.25, 0.5, 0.8]), atol=0.02, rtol=0)


def test_xnor_alpha_minimises_the_reconstruction_error():
    torch.manual_seed(0)
    w = torch.randn(4, 3, 3, 3)
    b = torch.where(w >= 0, 1.0, -1.0)
    alpha = xnor_alpha(w).reshape(-1)
    grid = torch.linspace(0, 2, 20001)  # numerical minimisation per filter on a fine grid
    for n in range(4):
        errors = ((w[n].reshape(1, -1) - grid[:, None] * b[n].reshape(1, -1)) ** 2).sum(dim=1)
        assert float(alpha[n]) == pytest.approx(float(grid[errors.argmin()]), abs=2e-4)
        assert float(alpha[n]) == pytest.approx(float(w[n].abs().sum() / w[n].numel()))


def test_freeze_keeps_the_function_and_clipping_bounds_weights():
    torch.manual_seed(0)
    conv = BinaryConv2d(2, 4, 3, padding=1, mode="xnor").eval()
    with torch.no_grad():
        conv.weight.mul_(5)
    x = torch.randn(2, 2, 5, 5)
    clip_binary_weights(nn.Sequential(conv))
    assert conv.weight.detach().abs().max().item() <= 1.0
    before = conv(x)
    conv.freeze()
    assert set(conv.weight.unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(conv(x), before)


def test_binarize_keeps_first_and_last_layers_real(make_model):
    model, _ = make_model("cnn2", size=12)
    swapped = binarize_model(model, "bnn")
    assert swapped == ["features.2", "features.7"]  # conv2 and FC128
    assert type(model.features[0]) is nn.Conv2d and type(model.head) is nn.Linear
    assert not any(type(m) is nn.ReLU for m in model.modules())  # Htanh feeds sign()
    assert model(torch.randn(2, 1, 12, 12)).shape == (2, 4)


@pytest.mark.parametrize("mode", ["binaryconnect", "xnor"])
def test_packed_storage_is_a_32nd_and_round_trips_exactly(mode, make_model, tmp_path):
    model, spec = make_model("softmax", size=64, classes=64)  # one 4096 x 64 Linear
    dense = tmp_path / "dense.safetensors"
    save_compressed(dense, model, spec=spec)
    binarize_model(model, mode, keep_first=False, keep_last=False)
    state = CompressState(model, spec)
    final = state.finalized()
    packed = tmp_path / "binary.safetensors"
    save_compressed(packed, final, spec=spec)
    ratio = packed.stat().st_size / dense.stat().st_size
    assert 1 / 33 < ratio < 1 / 30  # 1 bit per weight + float32 bias/alpha + header
    loaded, _ = load_compressed(packed)
    x = torch.randn(3, 1, 64, 64)
    assert torch.equal(loaded(x), final(x))
