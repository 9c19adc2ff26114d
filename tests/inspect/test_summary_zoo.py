"""Summaries of the cnnlab model zoo against published and hand-derived numbers.

Sources: BASELINES.md (Fashion-MNIST models, analytic Conv2d/Linear MACs), Handbook Table 3.1
(Alex-Net shapes, DERIVED 62,378,344 params) and Tables 3.2/3.3 with the Chapter 4 intro (VGG-16:
138,357,544 params, 30.9 GFLOPs at 2 FLOPs per MAC). Big ImageNet-size models are built on the
meta device, so the summary only propagates shapes (no weights are initialised, no arithmetic).
"""

from __future__ import annotations

import pytest
import torch

from cnnlab.inspect import conv_output_size, receptive_field_of, summary

models = pytest.importorskip(
    "cnnlab.models", reason="the model zoo (cnnlab.models) is written by another helper"
)


def make(name: str, in_chans: int, size: int, num_classes: int = 10, meta: bool = False, **kw):
    if meta:
        with torch.device("meta"):
            return models.create_model(
                name, num_classes=num_classes, in_chans=in_chans, input_size=size, **kw
            )
    return models.create_model(
        name, num_classes=num_classes, in_chans=in_chans, input_size=size, **kw
    )


# BASELINES.md, Fashion-MNIST table (1x28x28): params, forward MACs per image.
BASELINE = {
    "softmax": (7_850, 7_840),
    "cnn1": (54_410, 248_768),
    "cnn2": (1_199_882, 11_992_448),
    "lenet5": (61_706, 416_520),
    "vgg_small": (944_810, 29_783_808),
}


@pytest.mark.parametrize("name", sorted(BASELINE))
def test_fashion_mnist_baselines(name):
    info = summary(make(name, 1, 28), (1, 28, 28))
    assert (info.params, info.macs) == BASELINE[name]
    assert info.output_shape == (10,)


def test_cnn2_rows():
    info = summary(make("cnn2", 1, 28), (1, 28, 28))
    convs = [r for r in info.layers if r.type == "Conv2d"]
    # 32 x 26 x 26 outputs x 1 x 3 x 3; 64 x 24 x 24 outputs x 32 x 3 x 3
    assert [c.macs for c in convs] == [32 * 26 * 26 * 9, 64 * 24 * 24 * 32 * 9]
    assert [(c.receptive_field, c.jump) for c in convs] == [(3, 1), (5, 1)]


def test_resnet20_projection_shortcuts():
    # BASELINES.md ResNet-20 (16/32/64, 1x1 projection shortcuts): 272,186 params, 31,021,952 MACs
    info = summary(make("resnet20", 1, 28, shortcut="B"), (1, 28, 28))
    assert info.params == 272_186
    assert info.macs == 31_021_952
    # Option A (parameter-free shortcuts) drops the two 1x1 convs + BN: 16*32 + 64 + 32*64 + 128
    info_a = summary(make("resnet20", 1, 28, shortcut="A"), (1, 28, 28))
    assert info.params - info_a.params == 16 * 32 + 2 * 32 + 32 * 64 + 2 * 64
    # 1x1 convs: 32 x 14 x 14 outputs x 16, 64 x 7 x 7 outputs x 32
    assert info.macs - info_a.macs == 32 * 14 * 14 * 16 + 64 * 7 * 7 * 32
    # Main path: stem + 6 convs at j=1: r = 1 + 7*2 = 15; stage 2 conv 3/2: 15 + 2*1 = 17, j=2,
    # then 5 convs: 17 + 5*2*2 = 37; stage 3 conv 3/2: 37 + 2*2 = 41, j=4, then 41 + 5*2*4 = 81.
    chain = [(3, 1)] * 7 + [(3, 2)] + [(3, 1)] * 5 + [(3, 2)] + [(3, 1)] * 5
    rf, jump = receptive_field_of(chain)
    last_conv = [r for r in info.layers if r.type == "Conv2d"][-1]
    assert (last_conv.receptive_field, last_conv.jump) == (rf, jump) == (81, 4)
    assert info.receptive_field == 28  # after global average pooling: the whole input


# Handbook Table 3.1, one row per stage: (layer type, output C x H x W)
ALEXNET_STAGES = [
    ("Conv2d", (96, 55, 55), 11, 4),
    ("MaxPool2d", (96, 27, 27), 19, 8),
    ("Conv2d", (256, 27, 27), 51, 8),
    ("MaxPool2d", (256, 13, 13), 67, 16),
    ("Conv2d", (384, 13, 13), 99, 16),
    ("Conv2d", (384, 13, 13), 131, 16),
    ("Conv2d", (256, 13, 13), 163, 16),
    ("MaxPool2d", (256, 6, 6), 195, 32),
    ("Linear", (4096,), 227, 227),
    ("Linear", (4096,), 227, 227),
    ("Linear", (1000,), 227, 227),
]


def test_alexnet_table_3_1():
    info = summary(make("alexnet", 3, 227, 1000, meta=True), (3, 227, 227))
    assert info.params == 62_378_344  # Handbook DERIVED, ungrouped
    stages = [r for r in info.layers if r.type in ("Conv2d", "MaxPool2d", "Linear")]
    got = [(r.type, r.output_shape, r.receptive_field, r.jump) for r in stages]
    assert got == ALEXNET_STAGES
    assert [r.output_shape for r in info.layers if r.type == "LocalResponseNorm"] == [
        (96, 27, 27),
        (256, 13, 13),
    ]


def vgg16_macs_by_hand(size: int = 224, num_classes: int = 1000) -> int:
    """Conv and FC multiply-adds of VGG-16 from the layer table (Handbook Tables 3.2/3.3)."""
    blocks = [(2, 64), (2, 128), (3, 256), (3, 512), (3, 512)]
    macs, cin = 0, 3
    for n, cout in blocks:
        for _ in range(n):  # 3x3 "same" convs: H x W x Cout outputs, Cin x 9 each
            macs += size * size * cout * cin * 9
            cin = cout
        size = conv_output_size(size, 2, 2)
    return macs + (cin * size * size) * 4096 + 4096 * 4096 + 4096 * num_classes


def test_vgg16_params_and_macs():
    # By hand: conv 15,346,630,656 + FC (25,088 + 4,096) x 4,096 + 4,096,000 = 15,470,264,320
    assert vgg16_macs_by_hand() == 15_470_264_320  # x 2 = 30.94 GFLOPs ("30.9 billion", ch. 4)
    info = summary(make("vgg16", 3, 224, 1000, meta=True), (3, 224, 224))
    assert info.params == 138_357_544
    assert info.macs == vgg16_macs_by_hand()
    assert round(2 * info.macs / 1e9, 2) == 30.94
    assert [r.output_shape for r in info.layers if r.type == "MaxPool2d"][-1] == (512, 7, 7)


def test_resnet_imagenet_reference_counts():
    # ResNet paper / torchvision: 11,689,512 and 25,557,032 params; the paper's ~1.8 and ~3.8
    # GFLOPs are multiply-adds: 1.82e9 and 3.86e9 (v1, stride in the first 1x1 of a bottleneck)
    r18 = summary(make("resnet18", 3, 224, 1000, meta=True), (3, 224, 224))
    r50 = summary(make("resnet50", 3, 224, 1000, meta=True), (3, 224, 224))
    assert r18.params == 11_689_512
    assert r50.params == 25_557_032
    assert round(r18.macs / 1e9, 1) == 1.8
    assert round(r50.macs / 1e9, 1) == 3.9  # 3,857,973,248
    # conv1 7x7/2, maxpool 3x3/2, then 3x3 convs: the stem's receptive field is 7 + 2*2 = 11
    assert [(r.receptive_field, r.jump) for r in r50.layers[:4:3]] == [(7, 2), (11, 4)]


def test_meta_and_real_models_agree():
    real = summary(make("resnet20", 3, 32), (3, 32, 32))
    meta = summary(make("resnet20", 3, 32, meta=True), (3, 32, 32))
    assert real.to_dict() == meta.to_dict()


SMALL_ZOO = ["softmax", "cnn1", "cnn2", "lenet5", "vgg_small", "resnet20", "vgg11"]


@pytest.mark.parametrize("name", SMALL_ZOO)
@pytest.mark.parametrize(("in_chans", "size"), [(1, 28), (3, 32)])
def test_zoo_summaries_are_consistent(name, in_chans, size):
    model = make(name, in_chans, size, meta=name == "vgg11")
    info = summary(model, (in_chans, size, size))
    assert sum(r.macs for r in info.layers) == info.macs
    assert info.params == sum(p.numel() for p in model.parameters())
    assert info.output_shape == (10,)
    assert info.receptive_field == size  # classifiers end globally
    assert not info.notes
