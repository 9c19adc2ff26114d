"""Low-rank factorisation (Handbook §4.1): SVD error identity, rank rules, exactness."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnlab.compression.lowrank import (
    choose_rank,
    conv_channel_decompose,
    conv_channel_matrix,
    conv_spatial_decompose,
    conv_spatial_matrix,
    decompose_model,
    svd_linear,
)


def _linear_weight(seq: nn.Sequential) -> torch.Tensor:
    return seq[1].weight @ seq[0].weight  # (out, k) @ (k, in)


def _channel_weight(seq: nn.Sequential) -> torch.Tensor:
    first, second = seq[0].weight, seq[1].weight  # (r, c, kh, kw), (n, r, 1, 1)
    return torch.einsum("nr,rcyx->ncyx", second[:, :, 0, 0], first)


def _spatial_weight(seq: nn.Sequential) -> torch.Tensor:
    v, h = seq[0].weight[..., 0], seq[1].weight[:, :, 0]  # (r, c, kh), (n, r, kw)
    return torch.einsum("rcy,nrx->ncyx", v, h)


def _discarded(mat: torch.Tensor, k: int) -> float:
    s = torch.linalg.svdvals(mat.detach().double())
    return float(s[k:].pow(2).sum())


@pytest.mark.parametrize("k", [1, 3, 7])
def test_linear_svd_error_is_the_discarded_energy(k):
    torch.manual_seed(0)
    layer = nn.Linear(9, 7)
    seq = svd_linear(layer, k)
    err = (layer.weight - _linear_weight(seq)).detach().double().pow(2).sum()
    assert float(err) == pytest.approx(_discarded(layer.weight, k), rel=1e-4, abs=1e-9)
    x = torch.randn(5, 9)
    if k == 7:  # full rank: the same layer
        torch.testing.assert_close(seq(x), layer(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("decompose", "matrix", "compose"),
    [
        (conv_channel_decompose, conv_channel_matrix, _channel_weight),
        (conv_spatial_decompose, conv_spatial_matrix, _spatial_weight),
    ],
)
@pytest.mark.parametrize("stride", [1, 2])
def test_conv_schemes_error_identity_and_exact_at_full_rank(decompose, matrix, compose, stride):
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 5, 3, stride=stride, padding=1)
    full = min(matrix(conv).shape)
    for k in (1, 2, full):
        seq = decompose(conv, k)
        err = (conv.weight - compose(seq)).detach().double().pow(2).sum()
        assert float(err) == pytest.approx(_discarded(matrix(conv), k), rel=1e-4, abs=1e-9)
    x = torch.randn(2, 3, 9, 9)
    torch.testing.assert_close(seq(x), conv(x), atol=1e-5, rtol=1e-4)  # padding splits exactly


def test_energy_rule_keeps_the_stated_energy():
    s = torch.tensor([4.0, 2.0, 1.0, 1.0])  # sigma^2 = 16, 4, 1, 1 of 22
    assert choose_rank(s, energy=16 / 22) == 1
    assert choose_rank(s, energy=0.75) == 2  # 20/22 >= 0.75 > 16/22
    assert choose_rank(s, energy=0.95) == 3
    for e in (0.5, 0.8, 0.9, 0.99):
        k = choose_rank(s, energy=e)
        kept = s[:k].pow(2).sum() / s.pow(2).sum()
        assert kept >= e and (k == 1 or s[: k - 1].pow(2).sum() / s.pow(2).sum() < e)


def test_ratio_rule_fits_the_parameter_budget():
    s = torch.ones(10)
    # a 10 x 30 matrix: 300 params, 40 per rank; half the budget -> 3 ranks (120 <= 150)
    assert choose_rank(s, ratio=0.5, full_params=300, per_rank=40) == 3


def test_decompose_model_skips_first_layer_and_useless_factorisations(make_model):
    model, _ = make_model("cnn2", size=12)
    details = decompose_model(model, energy=0.5, ratio=None)
    names = [d["layer"] for d in details]
    assert "features.0" not in names  # first conv left alone
    assert all(d["energy_kept"] >= 0.5 for d in details)
    changed = [d for d in details if d["decomposed"]]
    assert changed and all(isinstance(model.get_submodule(d["layer"]), nn.Sequential)
                           for d in changed)  # fmt: skip
    assert model(torch.randn(2, 1, 12, 12)).shape == (2, 4)
