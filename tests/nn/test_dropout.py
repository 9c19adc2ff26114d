"""Fast inverted dropout: statistics, scaling, eval identity, gradient (handbook §10.4)."""

from __future__ import annotations

import pytest
import torch

from cnnlab.nn.dropout import Dropout, dropout_mask


@pytest.mark.parametrize("p", [0.25, 0.5, 0.1])
def test_mask_rate_and_expectation(p):
    torch.manual_seed(0)
    x = torch.ones(200_000)
    layer = Dropout(p).train()
    y = layer(x)
    keep = 1 - round(256 * p) / 256
    kept = (y != 0).float().mean().item()
    assert kept == pytest.approx(keep, abs=0.005)  # ~ 4.5 sigma at n = 200k
    assert y[y != 0].unique().tolist() == [pytest.approx(1 / keep)]
    # inverted dropout keeps the mean (D.1: matches classic dropout in expectation)
    assert y.mean().item() == pytest.approx(1.0, abs=0.015)


def test_eval_is_identity_and_p0_p1():
    x = torch.randn(4, 5)
    assert torch.equal(Dropout(0.5).eval()(x), x)
    assert torch.equal(Dropout(0.0).train()(x), x)
    assert torch.equal(Dropout(1.0).train()(x), torch.zeros_like(x))
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        Dropout(1.5)


def test_gradient_uses_the_same_mask():
    torch.manual_seed(1)
    x = torch.randn(64, 32, requires_grad=True)
    y = Dropout(0.5).train()(x)
    y.sum().backward()
    torch.testing.assert_close(x.grad, (y != 0).float() * 2.0)


def test_mask_bytes_are_uniform():
    torch.manual_seed(2)
    counts = torch.zeros(4)
    mask = dropout_mask(torch.Size([100_000]), 0.75, torch.device("cpu"))
    counts[0] = mask.float().mean()
    assert counts[0].item() == pytest.approx(0.25, abs=0.005)


def test_monotone_activations_commute_with_max_pool():
    import torch.nn.functional as F

    from cnnlab.nn.activations import MONOTONE, make_activation

    x = torch.randn(2, 3, 8, 8)
    for name in MONOTONE:
        act = make_activation(name)
        torch.testing.assert_close(F.max_pool2d(act(x), 2), act(F.max_pool2d(x, 2)))
