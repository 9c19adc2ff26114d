"""fastnet: the builder contract, its layer arithmetic, the whitening stem and the BN options."""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

from cnnlab.models import create_model
from cnnlab.nn.whitening import PatchWhitening
from cnnlab.registry import MODELS


@pytest.mark.parametrize(("in_chans", "size"), [(1, 28), (3, 32)])
@pytest.mark.parametrize("stem", ["whiten", "conv"])
def test_forward_backward_on_both_small_inputs(in_chans: int, size: int, stem: str) -> None:
    torch.manual_seed(0)
    model = create_model("fastnet", num_classes=10, in_chans=in_chans, input_size=size,
                         widths=[8, 16, 16], stem=stem)  # fmt: skip
    x = torch.randn(4, in_chans, size, size)
    model.train()
    out = model(x)
    assert out.shape == (4, 10)
    out.logsumexp(1).sum().backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.head(model.forward_features(x)))


def test_builder_contract_and_default_size() -> None:
    params = inspect.signature(MODELS.get("fastnet")).parameters
    assert all(p.kind is p.KEYWORD_ONLY for p in params.values())
    assert {"num_classes", "in_chans", "input_size", "activation"} <= set(params)
    model = create_model("fastnet", num_classes=10, in_chans=1)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    # 3 groups x depth 2 = 6 convolutions of 3x3, widths 32/64/128, after a 1 -> 8 stem
    assert [c.out_channels for c in convs] == [32, 32, 64, 64, 128, 128]
    assert isinstance(model.features[0], PatchWhitening) and model.features[0].out_chans == 8
    # the parameters, by hand: stem 8 biases; convs 9*cin*cout; BN 2*width; head 128*10
    convs_n = 9 * (8 * 32 + 32 * 32 + 32 * 64 + 64 * 64 + 64 * 128 + 128 * 128)
    expected = 8 + 8 * 4 + convs_n + 2 * 2 * (32 + 64 + 128) + 128 * 10
    assert sum(p.numel() for p in model.parameters()) == expected


def test_the_stem_fits_on_the_first_training_batch_and_is_frozen() -> None:
    model = create_model("fastnet", num_classes=10, in_chans=1, widths=[8, 8])
    stem = model.features[0]
    assert not stem.fitted and not stem.weight.requires_grad
    model.train()
    model(torch.randn(16, 1, 28, 28))
    assert stem.fitted


def test_batch_norm_options() -> None:
    model = create_model("fastnet", num_classes=10, in_chans=1, widths=[8, 8],
                         bn_momentum=0.4, bn_scale=False)  # fmt: skip
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(b.momentum == 0.4 for b in bns)
    assert all(not b.weight.requires_grad and b.bias.requires_grad for b in bns)


def test_logit_scale_multiplies_the_logits() -> None:
    torch.manual_seed(0)
    a = create_model("fastnet", num_classes=10, in_chans=1, widths=[8], logit_scale=1.0)
    torch.manual_seed(0)
    b = create_model("fastnet", num_classes=10, in_chans=1, widths=[8], logit_scale=0.25)
    x = torch.randn(2, 1, 28, 28)
    a.eval(), b.eval()
    with torch.no_grad():
        torch.testing.assert_close(b(x), a(x) * 0.25)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"widths": []}, "widths must be a non-empty list"),
        ({"depth": 0}, "depth must be a positive integer"),
        ({"stem": "big"}, "stem must be one of"),
        ({"bn_momentum": 2.0}, r"bn_momentum must be in \[0, 1\]"),
        ({"widths": [8, 8, 8, 8, 8]}, "too small"),
    ],
)
def test_bad_options_name_the_problem(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        create_model("fastnet", num_classes=10, in_chans=1, **options)
