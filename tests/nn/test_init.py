"""Initialisers (Handbook chapter 7): variance formulas, the zero-init trap, LSUV, apply_init."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

from cnnlab.nn.init import INITS, apply_init, lsuv_init, make_init, resolve_scheme


def filled(name: str, shape: tuple[int, ...], **options: object) -> torch.Tensor:
    torch.manual_seed(0)
    return make_init({"name": name, **options})(torch.empty(shape))


def test_registered_names() -> None:
    expected = {"zeros", "constant", "normal", "xavier_normal", "xavier_uniform",
                "kaiming_normal", "kaiming_uniform", "lecun_normal", "lecun_uniform",
                "orthogonal"}  # fmt: skip
    assert set(INITS.names()) >= expected
    for name in expected:
        assert INITS.describe(name), name


# Large layers: fan_in = 600, fan_out = 400 (Linear weight is (out, in)); ~2.4e5 samples, so the
# sample std is within ~0.3% of the true one.
FAN_IN, FAN_OUT = 600, 400
SHAPE = (FAN_OUT, FAN_IN)


@pytest.mark.parametrize(
    ("name", "options", "std"),
    [
        ("normal", {}, 0.001),  # the handbook's 0.001 * randn (§7.2)
        ("xavier_normal", {}, math.sqrt(2 / (FAN_IN + FAN_OUT))),
        ("xavier_normal", {"mode": "fan_in"}, math.sqrt(1 / FAN_IN)),  # handbook code, E.3 #31
        ("kaiming_normal", {}, math.sqrt(2 / FAN_IN)),  # He: std sqrt(2/n) (E.3 #33)
        ("kaiming_normal", {"mode": "fan_out"}, math.sqrt(2 / FAN_OUT)),
        ("lecun_normal", {}, math.sqrt(1 / FAN_IN)),
    ],
)
def test_gaussian_std(name: str, options: dict, std: float) -> None:
    w = filled(name, SHAPE, **options)
    assert w.mean().abs().item() < 0.01 * std + 3 * std / math.sqrt(w.numel())
    assert w.std().item() == pytest.approx(std, rel=0.01)


@pytest.mark.parametrize(
    ("name", "options", "bound"),
    [
        ("xavier_uniform", {}, math.sqrt(6 / (FAN_IN + FAN_OUT))),  # Glorot
        ("xavier_uniform", {"mode": "fan_in"}, math.sqrt(3 / FAN_IN)),  # E.3 item 32
        ("kaiming_uniform", {}, math.sqrt(6 / FAN_IN)),  # He uniform (E.3 item 32)
        ("lecun_uniform", {}, math.sqrt(3 / FAN_IN)),
    ],
)
def test_uniform_bounds_and_variance(name: str, options: dict, bound: float) -> None:
    w = filled(name, SHAPE, **options)
    assert w.abs().max().item() <= bound
    assert w.abs().max().item() > 0.99 * bound  # the whole interval is used
    assert w.var().item() == pytest.approx(bound**2 / 3, rel=0.02)  # Var U(-b, b) = b^2 / 3


def test_conv_fan_in_is_kernel_area_times_input_channels() -> None:
    w = filled("kaiming_normal", (256, 32, 3, 3))  # fan_in = 32 * 3 * 3 = 288
    assert w.std().item() == pytest.approx(math.sqrt(2 / 288), rel=0.02)


def test_orthogonal_and_constant() -> None:
    w = filled("orthogonal", (64, 128))
    torch.testing.assert_close(w @ w.t(), torch.eye(64), atol=1e-5, rtol=0)
    b = make_init({"name": "constant", "value": 0.5})(torch.empty(7))
    assert torch.all(b == 0.5)


def test_zeros_on_a_weight_warns_but_not_on_a_bias() -> None:
    init = make_init("zeros")
    with pytest.warns(UserWarning, match=r"identical .* cannot break .* symmetry"):
        init(torch.empty(4, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        init(torch.empty(4))  # biases at zero are fine


def train_mlp(scheme: str | dict, steps: int = 20) -> nn.Sequential:
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        apply_init(mlp, scheme)
    opt = torch.optim.SGD(mlp.parameters(), lr=0.5)
    x, y = torch.randn(64, 5), torch.randint(0, 3, (64,))
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(mlp(x), y).backward()
        opt.step()
    return mlp


def test_symmetric_init_keeps_hidden_units_identical() -> None:
    """§7.1: same output, same gradient -> the hidden units never become different."""
    for scheme in ("zeros", {"conv": "zeros", "linear": {"name": "constant", "value": 0.3}}):
        mlp = train_mlp(scheme)
        w1, w2 = mlp[0].weight, mlp[2].weight
        assert torch.allclose(w1, w1[:1].expand_as(w1)), scheme  # all rows (units) equal
        assert torch.allclose(w2, w2[:, :1].expand_as(w2)), scheme
    mlp = train_mlp({"linear": {"name": "normal", "std": 0.1}})
    assert not torch.allclose(mlp[0].weight, mlp[0].weight[:1].expand_as(mlp[0].weight))


def test_naive_gaussian_variance_grows_with_fan_in_but_xavier_stays_constant() -> None:
    """§7.2: Var(s) = n Var(w) Var(x): N(0, 1) weights give Var(s) ~ n; Xavier keeps ~1."""
    torch.manual_seed(0)
    x = torch.randn(2000, 1024)
    naive, xavier = [], []
    for n in (16, 128, 1024):
        layer = nn.Linear(n, n, bias=False)
        apply_init(layer, {"linear": {"name": "normal", "std": 1.0}})
        naive.append(layer(x[:, :n]).var().item())
        apply_init(layer, "xavier_normal")
        xavier.append(layer(x[:, :n]).var().item())
    for n, v in zip((16, 128, 1024), naive, strict=True):
        assert v == pytest.approx(n, rel=0.25)
    assert all(v == pytest.approx(1.0, rel=0.25) for v in xavier)


def test_apply_init_by_layer_type() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Flatten(), nn.Linear(8, 2))
    with torch.no_grad():
        model[1].weight.fill_(3.0)
        model[3].bias.fill_(1.0)
    counts = apply_init(model, {"conv": "orthogonal", "norm": "default"})
    assert counts == {"conv": 1, "linear": 1, "bias": 2, "norm": 0}
    assert torch.all(model[3].bias == 0) and torch.all(model[1].weight == 3.0)
    counts = apply_init(model, {"norm": {"name": "constant", "value": 0.5}, "bias": "default"})
    assert torch.all(model[1].weight == 0.5) and torch.all(model[1].bias == 0)
    assert counts["norm"] == 1 and counts["bias"] == 0
    before = model[0].weight.clone()
    assert apply_init(model, "default") == {"conv": 0, "linear": 0, "bias": 0, "norm": 0}
    assert torch.equal(model[0].weight, before)
    assert resolve_scheme("kaiming_uniform")["linear"] == "kaiming_uniform"


def test_bad_schemes_and_options_fail_clearly() -> None:
    with pytest.raises(ValueError, match=r"unknown layer type\(s\) 'convs'"):
        apply_init(nn.Linear(2, 2), {"convs": "zeros"})
    with pytest.raises(KeyError, match="unknown initializer 'xavier'"):
        apply_init(nn.Linear(2, 2), "xavier")
    with pytest.raises(ValueError, match="kaiming_normal: mode must be one of fan_in, fan_out"):
        make_init({"name": "kaiming_normal", "mode": "avg"})
    with pytest.raises(ValueError, match="normal: std must be > 0"):
        make_init({"name": "normal", "std": 0})


def test_lsuv_gives_unit_output_variance_per_layer() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2), nn.ReLU(),
        nn.Flatten(), nn.Linear(16 * 5 * 5, 32), nn.ReLU(), nn.Linear(32, 4),
    )  # fmt: skip
    x = torch.randn(64, 1, 14, 14) * 5 + 2
    result = lsuv_init(model, (x, torch.zeros(64)), tol=0.02)
    assert list(result) == ["0", "2", "5", "7"]  # forward order
    assert all(abs(v - 1) < 0.02 for v in result.values())
    # Re-measure independently: every layer's output variance on the batch is ~1.
    outs = []
    hooks = [model[i].register_forward_hook(lambda m, i, o: outs.append(o.var().item()))
             for i in (0, 2, 5, 7)]  # fmt: skip
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    assert outs == pytest.approx([1.0] * 4, abs=0.02)
    assert model.training  # mode restored
    with pytest.raises(ValueError, match="tol must be > 0"):
        lsuv_init(model, x, tol=0)


def test_lsuv_works_on_a_channels_last_model() -> None:
    # The trainer converts conv nets to channels_last before a data-dependent init runs.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3)).to(
        memory_format=torch.channels_last
    )
    x = torch.randn(32, 1, 12, 12).to(memory_format=torch.channels_last)
    result = lsuv_init(model, x)
    assert all(abs(v - 1) < 0.05 for v in result.values())
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    w = model[2].weight.flatten(1)  # still orthogonal rows up to the LSUV scale
    gram = w @ w.T
    assert torch.allclose(gram / gram.diag().mean(), torch.eye(8), atol=1e-4)
