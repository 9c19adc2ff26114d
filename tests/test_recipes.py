"""The shipped presets and their recipes (``cnnlab.recipes``): every one loads, validates and
builds a model that maps Fashion-MNIST-sized images to 10 logits (no training)."""

from __future__ import annotations

import pytest
import torch

from cnnlab.config import ConfigError, RunConfig, load_config
from cnnlab.models import create_model
from cnnlab.nn.whitening import PatchWhitening
from cnnlab.recipes import list_presets, load_preset

RECIPES = [(p, m) for p in list_presets() for m in load_preset(p).models]


def build_for_fashion_mnist(cfg: RunConfig) -> torch.nn.Module:
    """The model as the trainer builds it for Fashion-MNIST (training/assemble.py): the data
    fix the sizes."""
    return create_model(cfg.model.name, num_classes=10, in_chans=1, input_size=28,
                        **cfg.model.params)  # fmt: skip


def test_the_three_presets_are_shipped() -> None:
    assert list_presets() == ["best", "case-study", "fast"]
    assert load_preset("fast").models == ("fast93", "fast94", "fast95", "fastbest")


@pytest.mark.parametrize(("preset", "model"), RECIPES, ids=[f"{p}/{m}" for p, m in RECIPES])
def test_every_recipe_loads_and_builds(preset: str, model: str) -> None:
    path = load_preset(preset).recipe_path(model)
    assert path is not None
    cfg = load_config(path)  # checks every component's name and options
    net = build_for_fashion_mnist(cfg).eval()
    with torch.no_grad():
        assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_fastbest_has_the_measured_batch_norm_and_stem_options() -> None:
    """Issue 22: the 95.6% single-view recipe froze BN's scale and took a conv3x3 stem in place
    of the whitening (benchmarks/time_to_accuracy/additions/fastbest_conv_stem)."""
    cfg = load_config(load_preset("fast").recipe_path("fastbest"))
    assert cfg.model.params["stem"] == "conv" and cfg.model.params["bn_scale"] is False
    net = build_for_fashion_mnist(cfg)
    assert not any(isinstance(m, PatchWhitening) for m in net.modules())
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and not any(bn.weight.requires_grad for bn in bns)


def test_an_unknown_preset_names_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown preset 'fastest'; valid presets: .*fast"):
        load_preset("fastest")
