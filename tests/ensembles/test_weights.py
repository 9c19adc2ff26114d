"""Weighted-averaging weights: from validation accuracy, or fitted by minimum NLL (§13.2.2)."""

from __future__ import annotations

import pytest
import torch

from cnnlab.ensembles.combine import EnsembleError
from cnnlab.ensembles.weights import (
    fit_weights,
    member_accuracies,
    mixture_nll,
    weights_from_accuracy,
)


def test_weights_from_accuracy_are_proportional():
    w = weights_from_accuracy([0.8, 0.6])
    assert torch.allclose(w, torch.tensor([0.8 / 1.4, 0.6 / 1.4], dtype=torch.float64))
    assert weights_from_accuracy([0.0, 0.0]).tolist() == [0.5, 0.5]
    with pytest.raises(ValueError, match="finite and >= 0"):
        weights_from_accuracy([0.5, -0.1])


def _two_members(n: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    """Member A is right (p=0.9) on the first 70% of rows, B on the rest; C = 3."""
    y = torch.arange(n) % 3
    good = torch.full((n, 3), 0.05).scatter_(1, y.view(-1, 1), 0.9)
    bad = torch.full((n, 3), 0.45).scatter_(1, y.view(-1, 1), 0.1)
    split = int(0.7 * n)
    a = torch.cat([good[:split], bad[split:]])
    b = torch.cat([bad[:split], good[split:]])
    return torch.stack([a, b]).log(), y


def test_fitted_weights_are_on_the_simplex_and_minimise_the_nll():
    lp, y = _two_members()
    w = fit_weights(lp, y)
    assert w.sum().item() == pytest.approx(1.0, abs=1e-12)
    assert (w >= 0).all()
    grid = torch.linspace(0, 1, 2001, dtype=torch.float64)
    nlls = torch.tensor([mixture_nll(lp, y, torch.stack([g, 1 - g])) for g in grid])
    best = grid[nlls.argmin()]
    assert w[0].item() == pytest.approx(best.item(), abs=1e-3)
    assert mixture_nll(lp, y, w) <= nlls.min().item() + 1e-9


def test_a_useless_member_gets_almost_no_weight():
    y = torch.arange(300) % 4
    good = torch.full((300, 4), 0.2 / 3).scatter_(1, y.view(-1, 1), 0.8)
    noise = torch.softmax(torch.randn(300, 4, generator=torch.Generator().manual_seed(0)), 1)
    w = fit_weights(torch.stack([noise, good, noise]).log(), y)
    assert w[1] > 0.98 and (w >= 0).all() and w.sum().item() == pytest.approx(1.0)


def test_member_accuracies_and_bad_targets():
    lp, y = _two_members(100)
    assert member_accuracies(lp, y).tolist() == pytest.approx([0.7, 0.3])
    with pytest.raises(EnsembleError, match="targets: expected a \\(100,\\) tensor"):
        fit_weights(lp, y[:5])
    with pytest.raises(EnsembleError, match="class ids must be in"):
        fit_weights(lp, y + 3)
