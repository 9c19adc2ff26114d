"""PReLU (shared / channel-wise), RReLU, Maxout and the channels contract (Handbook chapter 8)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.nn.activations import (
    ACTIVATIONS,
    MONOTONE,
    ChannelMaxout,
    is_monotone,
    make_activation,
)

ALL = ACTIVATIONS.names()


def test_new_names_registered_and_not_monotone() -> None:
    assert {"prelu", "prelu_shared", "rrelu", "maxout"} <= set(ALL)
    for name in ("prelu", "prelu_shared", "rrelu", "maxout"):
        assert not is_monotone(name), name
    assert set(ALL) >= MONOTONE


@pytest.mark.parametrize("name", ALL)
def test_gradcheck_every_activation(name: str) -> None:
    """Finite differences vs autograd in float64, w.r.t. the input and any parameters."""
    torch.manual_seed(0)
    act = make_activation(name, channels=3).double().eval()  # eval: RReLU is deterministic
    # Keep clear of the kinks at 0 (and Maxout's crossing points) where a one-sided difference
    # quotient is not the derivative.
    x = torch.randn(2, 3, 4, dtype=torch.float64)
    x = torch.where(x.abs() < 0.1, x + 0.3 * x.sign(), x).requires_grad_()
    params = tuple(act.parameters())
    assert torch.autograd.gradcheck(lambda inp, *p: act(inp), (x, *params))


def test_tanh_sigmoid_and_relu_leaky_identities() -> None:
    x = torch.linspace(-8, 8, 161, dtype=torch.float64)
    torch.testing.assert_close(make_activation("tanh")(x), 2 * torch.sigmoid(2 * x) - 1)  # §8.2
    leaky0 = make_activation("leaky_relu", negative_slope=0.0)
    torch.testing.assert_close(leaky0(x), make_activation("relu")(x), rtol=0, atol=0)  # §8.3/8.4


def test_rrelu_eval_slope_is_mean_of_bounds_exactly() -> None:
    lower, upper = 0.1, 0.3
    act = make_activation("rrelu", lower=lower, upper=upper).eval()
    x = torch.tensor([-2.0, -1.0, -0.5, 0.0, 1.5])
    slope = (lower + upper) / 2
    torch.testing.assert_close(act(x), torch.where(x >= 0, x, slope * x), rtol=0, atol=0)
    default = make_activation("rrelu").eval()
    expected = (1 / 8 + 1 / 3) / 2  # Xu et al. bounds (Handbook E.4 item 37)
    assert default(torch.tensor([-1.0])).item() == pytest.approx(-expected, rel=1e-6)


def test_rrelu_training_slopes_lie_in_bounds_and_vary() -> None:
    torch.manual_seed(0)
    act = make_activation("rrelu").train()
    x = -torch.ones(10_000)
    slopes = act(x) / x
    assert slopes.min() >= 1 / 8 - 1e-6 and slopes.max() <= 1 / 3 + 1e-6
    assert slopes.std() > 0.03  # one fresh draw per element, not one per call
    assert slopes.mean().item() == pytest.approx((1 / 8 + 1 / 3) / 2, abs=0.01)
    pos = torch.rand(100)
    torch.testing.assert_close(act(pos), pos)  # identity for x >= 0


def test_rrelu_rejects_bad_bounds() -> None:
    with pytest.raises(ValueError, match=r"rrelu: .*0 <= lower < upper <= 1"):
        make_activation("rrelu", lower=0.5, upper=0.2)
    with pytest.raises(ValueError, match="rrelu"):
        make_activation("rrelu", lower=0.1, upper=1.5)


def test_prelu_channelwise_vs_shared() -> None:
    wise = make_activation("prelu", channels=5)
    shared = make_activation("prelu_shared", channels=5)  # channels ignored
    assert wise.weight.shape == (5,) and shared.weight.shape == (1,)
    assert torch.all(wise.weight == 0.25) and shared.weight.item() == 0.25  # E.4 item 36
    with torch.no_grad():
        wise.weight.copy_(torch.tensor([0.0, 0.1, 0.2, 0.3, 0.4]))
    x = -torch.ones(2, 5, 3, 3)
    out = wise(x)
    for c in range(5):
        assert torch.all(out[:, c] == -0.1 * c)
    assert make_activation("prelu").weight.shape == (1,)  # no channels: one shared slope


def test_maxout_starts_as_relu_for_k2_and_near_relu_for_larger_k() -> None:
    x = torch.linspace(-5, 5, 101)
    torch.testing.assert_close(make_activation("maxout")(x), F.relu(x), rtol=0, atol=0)
    m3 = make_activation("maxout", channels=4, k=3)
    y = m3(x.view(1, 1, -1).expand(2, 4, -1))
    assert (y - F.relu(x)).abs().max() <= torch.log(torch.tensor(2.0)) / 4 + 1e-6


def test_maxout_matches_the_definition_per_channel() -> None:
    torch.manual_seed(0)
    act = ChannelMaxout(channels=3, k=4)
    with torch.no_grad():
        act.weight.normal_()
        act.bias.normal_()
    x = torch.randn(2, 3, 5, 5)
    ref = torch.empty_like(x)
    for c in range(3):
        pieces = [act.weight[c, j] * x[:, c] + act.bias[c, j] for j in range(4)]
        ref[:, c] = torch.stack(pieces).amax(0)
    torch.testing.assert_close(act(x), ref)
    assert act.weight.numel() == 12  # k pieces per channel: shape preserved, widths unchanged
    assert act(x).shape == x.shape


def test_maxout_checks_channels_and_options() -> None:
    act = make_activation("maxout", channels=3)
    with pytest.raises(ValueError, match=r"built for 3 channels .* \(2, 4\)"):
        act(torch.randn(2, 4))
    with pytest.raises(ValueError, match=r"maxout: k .* >= 2"):
        make_activation("maxout", k=1)
    with pytest.raises(ValueError, match="channels must be a positive integer"):
        make_activation("prelu", channels=0)


def test_channels_is_ignored_by_activations_without_it() -> None:
    for name in ("relu", "tanh", "sigmoid", "leaky_relu", "elu", "rrelu", "lecun_tanh"):
        assert not any(True for _ in make_activation(name, channels=7).parameters()), name


def test_parametric_activations_learn() -> None:
    """One SGD step moves PReLU's and Maxout's parameters (they receive gradients)."""
    torch.manual_seed(0)
    for name in ("prelu", "maxout"):
        act = make_activation(name, channels=2)
        before = [p.detach().clone() for p in act.parameters()]
        opt = torch.optim.SGD(act.parameters(), lr=0.1)
        act(torch.randn(8, 2)).pow(2).sum().backward()
        opt.step()
        assert any(not torch.equal(b, p) for b, p in zip(before, act.parameters(), strict=True))
        assert isinstance(act, nn.Module)


# ---- every model takes activation=NAME ---------------------------------------------------------

#: Deeper copies of resnet20/resnet18/resnet50/plain20 (same block code, more blocks): run in
#: the slow test only, to keep this file fast.
DEEP_VARIANTS = {
    *(f"resnet{d}" for d in (32, 44, 56, 110, 34, 101, 152)),
    *(f"plain{d}" for d in (32, 44, 56, 110)),
}


def _zoo() -> list[str]:
    from cnnlab.models import list_models

    return list_models()


def _run_model(name: str, activation: str) -> nn.Module:
    from cnnlab.models import create_model
    from cnnlab.registry import MODELS

    torch.manual_seed(0)
    options = {"width": 0.25} if "width" in MODELS.parameters(name) else {}
    model = create_model(
        name, num_classes=3, in_chans=1, input_size=28, activation=activation, **options
    )
    out = model(torch.randn(2, 1, 28, 28))
    assert out.shape == (2, 3) and torch.isfinite(out).all()
    out.logsumexp(1).sum().backward()
    return model


@pytest.mark.parametrize("activation", ALL)
def test_every_model_takes_every_activation(activation: str) -> None:
    for name in _zoo():
        if name not in DEEP_VARIANTS:
            _run_model(name, activation)


@pytest.mark.slow
@pytest.mark.parametrize("activation", ["prelu", "maxout", "rrelu"])
def test_deep_variants_take_parametric_activations(activation: str) -> None:
    for name in sorted(DEEP_VARIANTS & set(_zoo())):
        _run_model(name, activation)


def test_models_pass_channel_counts_to_the_activation() -> None:
    """Channel-wise PReLU has one slope per channel of the layer it follows."""
    from cnnlab.models import create_model

    cases = {
        "cnn1": [32],
        "cnn2": [32, 64, 128],
        "lenet5": [6, 16, 120, 84],
        "vgg_small": [32, 32, 64, 64, 128, 128, 512, 128],
        "resnet20": [16] + [16] * 6 + [32] * 6 + [64] * 6,
    }
    for name, widths in cases.items():
        model = create_model(name, num_classes=3, in_chans=1, activation="prelu")
        slopes = sorted(m.weight.numel() for m in model.modules() if isinstance(m, nn.PReLU))
        assert slopes == sorted(widths), name
    alex = create_model("alexnet", num_classes=3, in_chans=1, input_size=28, activation="maxout")
    sites = [m.channels for m in alex.modules() if isinstance(m, ChannelMaxout)]
    assert sites == [96, 256, 384, 384, 256, 4096, 4096]
