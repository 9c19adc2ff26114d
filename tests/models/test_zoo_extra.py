"""The extra zoo (NIN, GoogLeNet, inception_small, MobileNet v1, SqueezeNet, plain CIFAR nets):
builder contract, forward/backward on small inputs, heads, auxiliary logits, bad options."""

from __future__ import annotations

import inspect

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.models import create_model, list_models
from cnnlab.models.inception import auxiliary_loss
from cnnlab.registry import MODELS

EXTRA = [
    "nin", "googlenet", "inception_small", "mobilenet_v1", "squeezenet1_0",
    "plain20", "plain32", "plain44", "plain56", "plain110",
]  # fmt: skip
SMALL_SHAPES = [(1, 28), (3, 32)]
# Default test path: narrower nets (same code, fewer FLOPs); the slow test runs the defaults.
FAST_OPTIONS: dict[str, dict[str, object]] = {
    "googlenet": {"width": 0.25},
    "inception_small": {"width": 0.5},
    "mobilenet_v1": {"alpha": 0.5},
    **{f"plain{d}": {"width": 0.5} for d in (20, 32, 44, 56, 110)},
}
IDENTITY_HEAD = {"nin", "squeezenet1_0"}  # the paper's class-map form: head = identity


def test_all_registered_with_the_contract() -> None:
    assert set(EXTRA) <= set(list_models())
    for name in EXTRA:
        assert not MODELS.accepts_any(name), name
        params = inspect.signature(MODELS.get(name)).parameters
        assert all(p.kind is p.KEYWORD_ONLY for p in params.values()), name
        for option in ("num_classes", "in_chans", "input_size", "activation"):
            assert params[option].default is not inspect.Parameter.empty, (name, option)
        assert MODELS.describe(name)


def run_forward_backward(name: str, in_chans: int, size: int, **options: object) -> nn.Module:
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_chans=in_chans, input_size=size, **options)
    x = torch.randn(2, in_chans, size, size)
    model.eval()
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.shape == (2, model.num_features)
        torch.testing.assert_close(model(x), model.head(feats), rtol=0, atol=0)
    model.train()
    out = model(x)
    assert out.shape == (2, 10)
    out.logsumexp(1).sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}: {pname} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name}: {pname} has a non-finite gradient"
    cfg = model.default_cfg
    assert (cfg["input_size"], cfg["in_chans"], cfg["num_classes"]) == (size, in_chans, 10)
    assert cfg["arch"] == name and cfg["paper"]
    head_type = nn.Identity if name in IDENTITY_HEAD else nn.Linear
    assert type(model.head) is head_type
    return model


@pytest.mark.parametrize(("in_chans", "size"), SMALL_SHAPES)
@pytest.mark.parametrize("name", EXTRA)
def test_forward_backward_small_inputs(name: str, in_chans: int, size: int) -> None:
    run_forward_backward(name, in_chans, size, **FAST_OPTIONS.get(name, {}))


@pytest.mark.slow
@pytest.mark.parametrize(("in_chans", "size"), SMALL_SHAPES)
@pytest.mark.parametrize("name", EXTRA)
def test_forward_backward_default_options(name: str, in_chans: int, size: int) -> None:
    run_forward_backward(name, in_chans, size)


@pytest.mark.parametrize("name", ["nin", "squeezenet1_0"])
def test_class_map_nets_average_their_class_maps(name: str) -> None:
    model = create_model(name, num_classes=7, in_chans=1, input_size=28).eval()
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        maps = model.class_maps(x)
        assert maps.shape[:2] == (2, 7) and maps.min() >= 0  # after the final ReLU
        torch.testing.assert_close(model(x), maps.mean(dim=(2, 3)))
    assert model.num_features == 7
    model.reset_classifier(3)
    assert model(x).shape == (2, 3) and model.num_features == 3
    assert model.default_cfg["num_classes"] == 3


@pytest.mark.parametrize("name", ["nin", "squeezenet1_0"])
def test_linear_classifier_is_the_class_conv_after_pooling(name: str) -> None:
    """GAP then Linear == 1x1 conv (same weights, no activation) then GAP: both are linear."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=5, in_chans=3, input_size=32, classifier="linear")
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        maps = model.class_maps(x)
        w, b = model.head.weight, model.head.bias
        conv_then_gap = F.conv2d(maps, w[:, :, None, None], b).mean(dim=(2, 3))
        torch.testing.assert_close(model(x), conv_then_gap, rtol=1e-5, atol=1e-5)
    paper = create_model(name, num_classes=5, in_chans=3, input_size=32)
    # Same parameter count: the class 1x1 conv (C x D + C) moved into the head.
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in paper.parameters())


def test_googlenet_aux_logits_only_in_training() -> None:
    torch.manual_seed(0)
    model = create_model(
        "googlenet", num_classes=10, in_chans=1, input_size=28, aux_logits=True, width=0.25
    )
    x, y = torch.randn(2, 1, 28, 28), torch.tensor([1, 2])
    model.train()
    logits = model(x)
    assert logits.shape == (2, 10)
    assert [a.shape for a in model.aux_outputs] == [(2, 10), (2, 10)]
    aux = auxiliary_loss(model, F.cross_entropy, y)
    expected = 0.3 * sum(F.cross_entropy(a, y) for a in model.aux_outputs)
    torch.testing.assert_close(aux, expected)
    (F.cross_entropy(logits, y) + aux).backward()
    assert model.aux1.fc2.weight.grad is not None and model.aux2.fc2.weight.grad is not None
    model.eval()
    with torch.no_grad():
        model(x)
    assert model.aux_outputs == ()
    assert auxiliary_loss(model, F.cross_entropy, y).item() == 0.0
    # Without aux heads there are no aux parameters at all.
    plain = create_model("googlenet", num_classes=10, in_chans=1, input_size=28, width=0.25)
    assert not any(n.startswith("aux") for n, _ in plain.named_parameters())


def test_googlenet_aux_rejects_other_image_sizes() -> None:
    model = create_model(
        "googlenet", num_classes=10, in_chans=1, input_size=28, aux_logits=True, width=0.25
    ).train()
    with pytest.raises(ValueError, match=r"auxiliary classifier was built for 4x4"):
        model(torch.randn(2, 1, 40, 40))


def test_mobilenet_uses_depthwise_convs() -> None:
    model = create_model("mobilenet_v1", num_classes=10, in_chans=3, input_size=32)
    dw = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert len(dw) == 13
    assert all(m.groups == m.in_channels == m.out_channels for m in dw)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 27  # BN (then ReLU) after each of the 27 convs


def test_plain_nets_have_no_shortcuts() -> None:
    plain = create_model("plain20", num_classes=10, in_chans=3)
    res = create_model("resnet20", num_classes=10, in_chans=3)
    assert all(block.shortcut is None for stage in plain.stages() for block in stage)
    assert plain.default_cfg["arch"] == "plain20"
    count = [sum(p.numel() for p in m.parameters()) for m in (plain, res)]
    assert count == [269_722, 269_722]  # option-A shortcuts have no parameters


@pytest.mark.parametrize(
    ("name", "options", "pattern"),
    [
        ("nin", {"classifier": "fc"}, r"classifier must be one of 'conv', 'linear'"),
        ("nin", {"input_size": 5}, r"nin: input_size=5 is too small \(needs >= 6\)"),
        ("googlenet", {"stem": "imagenet"}, r"googlenet: input_size=28 is too small"),
        ("googlenet", {"dropout": 1.0}, r"dropout must be a number in \[0, 1\)"),
        ("mobilenet_v1", {"alpha": 0}, r"alpha \(width multiplier\) must be a positive number"),
        ("squeezenet1_0", {"stem": "imagenet"}, r"squeezenet1_0: input_size=28 is too small"),
        ("inception_small", {"input_size": 4}, r"inception_small: input_size=4 is too small"),
        ("plain20", {"width": -1}, r"width must be a positive number"),
    ],
)
def test_bad_options_fail_clearly(name: str, options: dict, pattern: str) -> None:
    kw = {"num_classes": 10, "in_chans": 1, "input_size": 28, **options}
    with pytest.raises(ValueError, match=pattern):
        create_model(name, **kw)


@pytest.mark.parametrize("name", ["nin", "mobilenet_v1", "squeezenet1_0", "inception_small"])
def test_activation_option_replaces_every_relu(name: str) -> None:
    model = create_model(name, num_classes=10, in_chans=1, input_size=28, activation="elu")
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())
    assert any(isinstance(m, nn.ELU) for m in model.modules())


def test_stem_switch() -> None:
    for name in ("googlenet", "mobilenet_v1", "squeezenet1_0"):
        with torch.device("meta"):
            big = create_model(name, num_classes=10, in_chans=3, input_size=224)
            small = create_model(name, num_classes=10, in_chans=3, input_size=32)
        assert (big.default_cfg["stem"], small.default_cfg["stem"]) == ("imagenet", "small")
