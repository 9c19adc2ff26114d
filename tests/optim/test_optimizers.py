"""Each optimiser's first steps against its update rule written out by hand (§11.2.4)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from cnnlab.optim.optimizers import OPTIMIZERS, param_groups

W0, G1, G2 = (
    torch.tensor([1.0, -2.0, 0.5]),
    torch.tensor([0.3, -0.1, 2.0]),
    torch.tensor([-0.2, 0.4, 1.0]),
)


def _steps(name, grads, lr=0.1, weight_decay=0.0, **opts):
    w = nn.Parameter(W0.clone())
    opt = OPTIMIZERS.build(name, params=[w], lr=lr, weight_decay=weight_decay, **opts)
    for g in grads:
        w.grad = g.clone()
        opt.step()
    return w.detach()


def test_sgd():
    torch.testing.assert_close(_steps("sgd", [G1]), W0 - 0.1 * G1)


def test_momentum_two_steps():
    v1 = G1
    v2 = 0.9 * v1 + G2
    torch.testing.assert_close(_steps("momentum", [G1, G2]), W0 - 0.1 * v1 - 0.1 * v2)


def test_nesterov_first_step():
    # Look-ahead form used by torch: step = g + mu * v with v = g on the first step.
    torch.testing.assert_close(_steps("nesterov", [G1]), W0 - 0.1 * (G1 + 0.9 * G1))


def test_adagrad():
    expected = W0 - 0.1 * G1 / (G1.abs() + 1e-6)
    torch.testing.assert_close(_steps("adagrad", [G1]), expected)
    acc = G1**2 + G2**2
    two = expected - 0.1 * G2 / (acc.sqrt() + 1e-6)
    torch.testing.assert_close(_steps("adagrad", [G1, G2]), two)


def test_adadelta():
    rho, eps = 0.95, 1e-6
    sq = (1 - rho) * G1**2
    delta = math.sqrt(eps) / (sq + eps).sqrt() * G1
    torch.testing.assert_close(_steps("adadelta", [G1], lr=1.0), W0 - delta)


def test_rmsprop():
    sq = (1 - 0.9) * G1**2
    torch.testing.assert_close(
        _steps("rmsprop", [G1], lr=0.01), W0 - 0.01 * G1 / (sq.sqrt() + 1e-6)
    )


def test_adam_first_step_is_about_lr():
    # Bias correction makes m_hat = g, v_hat = g^2: the step is lr * g / (|g| + eps) ~ lr (D.1).
    w1 = _steps("adam", [G1], lr=0.001)
    torch.testing.assert_close(w1, W0 - 0.001 * G1 / (G1.abs() + 1e-8))
    assert torch.allclose((W0 - w1).abs(), torch.full((3,), 0.001), rtol=1e-4)


def test_adamw_decouples_decay():
    w1 = _steps("adamw", [G1], lr=0.01, weight_decay=0.1)
    torch.testing.assert_close(w1, W0 * (1 - 0.01 * 0.1) - 0.01 * G1 / (G1.abs() + 1e-8))


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_every_optimizer_builds_from_defaults_and_steps(name):
    w = _steps(name, [G1, G2], lr=0.01)
    assert torch.isfinite(w).all() and not torch.equal(w, W0)


def test_no_decay_on_norms_and_biases():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(8, 2))
    decay, no_decay = param_groups(model, weight_decay=0.1)
    assert [p.shape for p in decay["params"]] == [torch.Size([2, 1, 3, 3]), torch.Size([2, 8])]
    assert no_decay["weight_decay"] == 0.0 and len(no_decay["params"]) == 4
    assert len(param_groups(model, 0.1, decay_norm_and_bias=True)) == 1
