"""Registry-driven checks: every model builds, runs forward+backward and honours the contract."""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

from cnnlab.models import create_model, list_models
from cnnlab.registry import MODELS, RegistryError

EXPECTED = {
    "softmax", "cnn1", "cnn2", "lenet5", "alexnet", "vgg11", "vgg13", "vgg16", "vgg19",
    "vgg_small", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnet20",
    "resnet32", "resnet44", "resnet56", "resnet110",
}  # fmt: skip
SMALL_SHAPES = [(1, 28), (3, 32)]
# The ImageNet nets run at a quarter of their width in the default test path (same code,
# ~16x fewer parameters); the slow test below runs every model with its default options.
IMAGENET_NETS = {"alexnet", "vgg11", "vgg13", "vgg16", "vgg19", "resnet18", "resnet34",
                 "resnet50", "resnet101", "resnet152"}  # fmt: skip
FAST_OPTIONS: dict[str, dict[str, object]] = {name: {"width": 0.25} for name in IMAGENET_NETS}


def test_every_family_is_registered() -> None:
    assert set(list_models()) >= EXPECTED
    assert list_models() == sorted(list_models())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_builder_signature_contract(name: str) -> None:
    assert not MODELS.accepts_any(name), "no **kwargs catch-all"
    params = inspect.signature(MODELS.get(name)).parameters
    assert all(p.kind is p.KEYWORD_ONLY for p in params.values())
    for option in ("num_classes", "in_chans", "input_size", "activation"):
        assert option in params, option
        assert params[option].default is not inspect.Parameter.empty
    assert MODELS.describe(name), "docstring summary for `cnnlab list`"


def run_forward_backward(name: str, in_chans: int, size: int, **options: object) -> None:
    """Build, check forward == head(forward_features) in eval mode, then train-mode backward."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_chans=in_chans, input_size=size, **options)
    x = torch.randn(2, in_chans, size, size)
    model.eval()  # dropout off, BN uses running stats: both paths compute the same function
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
    # (lenet5's variant='1998' has an RBF head instead: see test_lenet.py)
    assert type(model.head) is nn.Linear and model.head.out_features == 10
    cfg = model.default_cfg
    assert {"input_size", "in_chans", "num_classes", "paper"} <= set(cfg)
    assert (cfg["input_size"], cfg["in_chans"], cfg["num_classes"]) == (size, in_chans, 10)


@pytest.mark.parametrize(("in_chans", "size"), SMALL_SHAPES)
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_forward_backward_small_inputs(name: str, in_chans: int, size: int) -> None:
    run_forward_backward(name, in_chans, size, **FAST_OPTIONS.get(name, {}))


@pytest.mark.slow
@pytest.mark.parametrize(("in_chans", "size"), SMALL_SHAPES)
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_forward_backward_small_inputs_default_options(name: str, in_chans: int, size: int):
    run_forward_backward(name, in_chans, size)


def test_reset_classifier_for_fine_tuning() -> None:
    model = create_model("resnet20", num_classes=10, in_chans=3)
    model.reset_classifier(4)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 4)
    assert model.default_cfg["num_classes"] == 4
    lenet = create_model("lenet5", num_classes=10, in_chans=1, variant="1998")
    lenet.reset_classifier(3)
    assert lenet(torch.randn(2, 1, 32, 32)).shape == (2, 3)


def test_input_size_default_comes_from_builder() -> None:
    assert create_model("cnn1", num_classes=10, in_chans=1).default_cfg["input_size"] == 28
    assert create_model("resnet20", num_classes=10, in_chans=3).default_cfg["input_size"] == 32


def test_unknown_model_lists_close_matches() -> None:
    with pytest.raises(RegistryError, match=r"unknown model 'resnet19'.*Did you mean.*'resnet18'"):
        create_model("resnet19", num_classes=10, in_chans=3)


def test_unknown_option_names_it_and_lists_valid_ones() -> None:
    with pytest.raises(RegistryError) as err:
        create_model("alexnet", num_classes=10, in_chans=1, input_size=28, dropuot=0.1)
    msg = str(err.value)
    assert "'dropuot'" in msg and "valid options" in msg and "dropout" in msg and "width" in msg


@pytest.mark.parametrize(
    ("name", "options", "pattern"),
    [
        ("resnet18", {"stem": "big"}, r"stem must be one of 'auto', 'imagenet', 'small'"),
        ("resnet20", {"shortcut": "C"}, r"shortcut must be one of 'A', 'B'"),
        ("cnn2", {"dropout": 1.5}, r"dropout must be a number in \[0, 1\)"),
        ("alexnet", {"width": 0}, r"width must be a positive number"),
        ("lenet5", {"variant": "1989"}, r"variant must be one of"),
        ("vgg16", {"stem": "imagenet"}, r"vgg16: input_size=28 is too small"),
        ("alexnet", {"stem": "imagenet"}, r"alexnet: input_size=28 is too small \(needs >= 67\)"),
        ("vgg11", {"init": "xavier"}, r"init must be one of 'paper', 'torch'"),
    ],
)
def test_bad_option_values_fail_clearly(name: str, options: dict, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        create_model(name, num_classes=10, in_chans=1, input_size=28, **options)


def test_bad_common_values_and_activation_fail_clearly() -> None:
    with pytest.raises(ValueError, match="num_classes must be a positive integer, got 0"):
        create_model("cnn1", num_classes=0, in_chans=1)
    with pytest.raises(ValueError, match="input_size must be a positive integer"):
        create_model("cnn1", num_classes=10, in_chans=1, input_size=-3)
    with pytest.raises(RegistryError, match=r"unknown activation 'relux'.*'relu'"):
        create_model("cnn1", num_classes=10, in_chans=1, activation="relux")


def test_wrong_input_is_a_clear_error() -> None:
    model = create_model("cnn2", num_classes=10, in_chans=1, input_size=28)
    with pytest.raises(ValueError, match=r"built for in_chans=1 but got 3 channels"):
        model(torch.randn(2, 3, 28, 28))
    with pytest.raises(ValueError, match=r"built for input_size=28 .* got \(32, 32\)"):
        model(torch.randn(2, 1, 32, 32))
    with pytest.raises(ValueError, match=r"expects a 4-D batch"):
        model(torch.randn(1, 28, 28))
    # Global-pooling nets take any spatial size.
    resnet = create_model("resnet20", num_classes=10, in_chans=1, input_size=28)
    assert resnet(torch.randn(2, 1, 40, 36)).shape == (2, 10)


@pytest.mark.parametrize("activation", ["tanh", "prelu"])
def test_activation_option_replaces_every_relu(activation: str) -> None:
    for name in ("cnn2", "vgg_small", "resnet20", "lenet5"):
        model = create_model(name, num_classes=10, in_chans=1, input_size=28, activation=activation)
        assert not any(isinstance(m, nn.ReLU) for m in model.modules()), (name, activation)
        model(torch.randn(2, 1, 28, 28)).sum().backward()
