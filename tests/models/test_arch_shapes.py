"""Feature-map sizes, layer layouts and MACs of AlexNet, VGG and ResNet at paper and small sizes.

Full-size nets run on the meta device (shapes and FLOP counting without arithmetic).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cnnlab.models import create_model
from cnnlab.models.resnet import BasicBlock, Bottleneck
from cnnlab.nn import LocalResponseNorm, ShortcutA
from cnnlab.nn.dropout import Dropout


def meta_model(name: str, **kw: object) -> nn.Module:
    with torch.device("meta"):
        return create_model(name, **kw)


def sides_after(model: nn.Sequential, x: torch.Tensor, kinds: tuple[type, ...]) -> list[int]:
    """Spatial side after every layer of one of ``kinds`` in a Sequential."""
    sides = []
    for layer in model:
        x = layer(x)
        if isinstance(layer, kinds):
            sides.append(x.shape[-1])
    return sides


def stage_outputs(model: nn.Module, x: torch.Tensor) -> list[tuple[int, ...]]:
    """(C, H, W) after the stem's stages of a ResNet."""
    shapes = []
    x = model.stem(x)
    for stage in model.stages():
        x = stage(x)
        shapes.append(tuple(x.shape[1:]))
    return shapes


def test_alexnet_table_3_1_shapes() -> None:
    model = meta_model("alexnet", num_classes=1000, in_chans=3)
    x = torch.empty(1, 3, 227, 227, device="meta")
    # conv1 55, pool1 27, conv2 27, pool2 13, conv3-5 13, pool5 6.
    assert sides_after(model.features, x, (nn.Conv2d,)) == [55, 27, 13, 13, 13]
    assert sides_after(model.features, x, (nn.MaxPool2d,)) == [27, 13, 6]
    names = [n for n, _ in model.features.named_children()]
    # Table 3.1 order: conv -> ReLU -> pool -> LRN.
    assert names[:8] == ["conv1", "act1", "pool1", "lrn1", "conv2", "act2", "pool2", "lrn2"]
    lrn = model.features.lrn1
    assert isinstance(lrn, LocalResponseNorm)
    assert (lrn.k, lrn.size, lrn.alpha, lrn.beta, lrn.alpha_over_n) == (2.0, 5, 1e-4, 0.75, False)
    assert [m.p for m in model.classifier if isinstance(m, Dropout)] == [0.5, 0.5]
    assert model.features.conv1.stride == (4, 4) and model.features.conv1.kernel_size == (11, 11)
    assert model(torch.empty(2, 3, 227, 227, device="meta")).shape == (2, 1000)


def test_alexnet_options() -> None:
    model = meta_model("alexnet", num_classes=10, in_chans=1, input_size=28, lrn=False, groups=2)
    assert not any(isinstance(m, LocalResponseNorm) for m in model.modules())
    convs = ("conv2", "conv3", "conv4", "conv5")
    assert [model.features.get_submodule(c).groups for c in convs] == [2, 1, 2, 2]
    # Small stem: 3x3/1 conv1, maps 28 -> pools 13, 6, 2.
    x = torch.empty(1, 1, 28, 28, device="meta")
    assert model.features.conv1.kernel_size == (3, 3)
    assert sides_after(model.features, x, (nn.MaxPool2d,)) == [13, 6, 2]
    half = meta_model("alexnet", num_classes=10, in_chans=3, input_size=32, width=0.5)
    assert half.features.conv1.out_channels == 48 and half.head.in_features == 2048


def test_alexnet_paper_init() -> None:
    torch.manual_seed(0)
    model = create_model("alexnet", num_classes=10, in_chans=1, input_size=28, width=0.25)
    f, c = model.features, model.classifier
    for layer in (f.conv2, f.conv4, f.conv5, c.fc6, c.fc7):
        assert torch.all(layer.bias == 1)
    for layer in (f.conv1, f.conv3, model.head):
        assert torch.all(layer.bias == 0)
    assert abs(c.fc6.weight.std().item() - 0.01) < 1e-3


def test_vgg16_block_sides_at_224() -> None:
    model = meta_model("vgg16", num_classes=1000, in_chans=3)
    x = torch.empty(1, 3, 224, 224, device="meta")
    sides = [x.shape[-1]]
    for layer in model.features:
        x = layer(x)
        if isinstance(layer, nn.MaxPool2d):
            sides.append(x.shape[-1])
    assert sides == [224, 112, 56, 28, 14, 7]
    assert model.classifier.fc1.in_features == 7 * 7 * 512
    n_convs = sum(isinstance(m, nn.Conv2d) for m in model.modules())
    n_fcs = sum(isinstance(m, nn.Linear) for m in model.modules())
    assert (n_convs, n_fcs) == (13, 3)


def test_vgg16_multiply_adds_at_224() -> None:
    # Per conv layer: H*W*Cout*(9*Cin); blocks at 224, 112, 56, 28, 14.
    blocks = [
        (224, [(3, 64), (64, 64)]),
        (112, [(64, 128), (128, 128)]),
        (56, [(128, 256), (256, 256), (256, 256)]),
        (28, [(256, 512), (512, 512), (512, 512)]),
        (14, [(512, 512)] * 3),
    ]
    conv_macs = sum(s * s * o * 9 * i for s, layers in blocks for i, o in layers)
    fc_macs = 25_088 * 4096 + 4096 * 4096 + 4096 * 1000
    assert conv_macs + fc_macs == 15_470_264_320  # 15.47 G MACs = 30.94 GFLOPs (Handbook §4)
    model = meta_model("vgg16", num_classes=1000, in_chans=3)
    with FlopCounterMode(display=False) as counter:
        model(torch.empty(1, 3, 224, 224, device="meta"))
    assert counter.get_total_flops() == 2 * 15_470_264_320


def test_vgg_small_stem_and_options() -> None:
    model = meta_model("vgg11", num_classes=10, in_chans=1, input_size=28)
    pools = [m for m in model.features if isinstance(m, nn.MaxPool2d)]
    assert all(p.ceil_mode for p in pools)
    x = torch.empty(1, 1, 28, 28, device="meta")
    assert sides_after(model.features, x, (nn.MaxPool2d,)) == [14, 7, 4, 2, 1]
    assert model.classifier.fc1.out_features == 512
    bn = meta_model("vgg11", num_classes=10, in_chans=3, input_size=32, batch_norm=True)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in bn.modules()) == 8
    wide = meta_model("vgg11", num_classes=10, in_chans=3, input_size=32, classifier_width=1024)
    assert wide.head.in_features == 1024
    imagenet = meta_model("vgg11", num_classes=1000, in_chans=3, input_size=224)
    assert not any(p.ceil_mode for p in imagenet.features if isinstance(p, nn.MaxPool2d))


def test_vgg_small_case_study_layout() -> None:
    model = create_model("vgg_small", num_classes=10, in_chans=1, input_size=28)
    kinds = [type(m) for m in model.classifier]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.ReLU, Dropout] * 2
    assert model.classifier.fc1.in_features == 1152 and model.head.in_features == 128
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 6


def test_resnet_stem_switch_and_stage_sides() -> None:
    big = meta_model("resnet18", num_classes=1000, in_chans=3)
    assert isinstance(big.stem.pool, nn.MaxPool2d) and big.stem.conv.conv.kernel_size == (7, 7)
    sides = [s[-1] for s in stage_outputs(big, torch.empty(1, 3, 224, 224, device="meta"))]
    assert sides == [56, 28, 14, 7]
    small = create_model("resnet18", num_classes=10, in_chans=3, input_size=32)
    assert not hasattr(small.stem, "pool") and small.stem.conv.conv.kernel_size == (3, 3)
    assert small.stem.conv.conv.stride == (1, 1)
    sides = [s[-1] for s in stage_outputs(small, torch.randn(1, 3, 32, 32))]
    assert sides == [32, 16, 8, 4]


def test_bottleneck_stride_position() -> None:
    paper = meta_model("resnet50", num_classes=1000, in_chans=3)
    v15 = meta_model("resnet50", num_classes=1000, in_chans=3, stride_in_1x1=False)
    b_paper, b_v15 = paper.layer2[0], v15.layer2[0]
    assert b_paper.conv1.conv.stride == (2, 2) and b_paper.conv2.conv.stride == (1, 1)
    assert b_v15.conv1.conv.stride == (1, 1) and b_v15.conv2.conv.stride == (2, 2)
    assert sum(p.numel() for p in paper.parameters()) == sum(p.numel() for p in v15.parameters())


def test_cifar_resnet_layout_and_shortcuts() -> None:
    model = create_model("resnet20", num_classes=10, in_chans=3)
    assert [len(s) for s in model.stages()] == [3, 3, 3]
    assert isinstance(model.layer2[0].shortcut, ShortcutA)
    assert isinstance(model.layer1[0].shortcut, nn.Identity)
    shapes = stage_outputs(model, torch.randn(1, 3, 32, 32))
    assert shapes == [(16, 32, 32), (32, 16, 16), (64, 8, 8)]
    proj = create_model("resnet20", num_classes=10, in_chans=3, shortcut="B")
    assert isinstance(proj.layer2[0].shortcut.conv, nn.Conv2d)
    plain = create_model("resnet56", num_classes=10, in_chans=3, plain=True)
    blocks = [b for s in plain.stages() for b in s]
    assert len(blocks) == 27 and all(b.shortcut is None for b in blocks)


def test_residual_block_adds_the_shortcut() -> None:
    torch.manual_seed(0)
    block = BasicBlock(4, 4, 1, activation="relu", shortcut="A").eval()
    x = torch.randn(2, 4, 5, 5)
    torch.testing.assert_close(block(x), torch.relu(block.conv2(block.conv1(x)) + x))
    with torch.no_grad():
        block.conv2.bn.weight.zero_()  # residual branch off: the block is relu(identity)
    torch.testing.assert_close(block(x), torch.relu(x))


def test_identity_shortcut_adds_no_parameters() -> None:
    def n(m: nn.Module) -> int:
        return sum(p.numel() for p in m.parameters())

    kw = {"activation": "relu"}
    assert n(BasicBlock(64, 64, 1, shortcut="B", **kw)) == n(
        BasicBlock(64, 64, 1, shortcut=None, **kw)
    )
    # Where the shape changes, B adds a 1x1 conv + BN (64*128 + 2*128), A adds nothing.
    assert (
        n(BasicBlock(64, 128, 2, shortcut="B", **kw))
        - n(BasicBlock(64, 128, 2, shortcut=None, **kw))
        == 64 * 128 + 256
    )
    assert n(BasicBlock(64, 128, 2, shortcut="A", **kw)) == n(
        BasicBlock(64, 128, 2, shortcut=None, **kw)
    )


@pytest.mark.parametrize("plain", [False, True])
def test_bottleneck_vs_two_3x3_weights(plain: bool) -> None:
    # Seed 004: 1x1x256x64 + 3x3x64x64 + 1x1x64x256 = 69,632 vs 3x3x256x256x2 = 1,179,648.
    def conv_weights(m: nn.Module) -> int:
        return sum(c.weight.numel() for c in m.modules() if isinstance(c, nn.Conv2d))

    shortcut = None if plain else "B"
    assert conv_weights(Bottleneck(256, 64, 1, activation="relu", shortcut=shortcut)) == 69_632
    assert conv_weights(BasicBlock(256, 256, 1, activation="relu", shortcut=shortcut)) == 1_179_648


def test_auto_stem_threshold() -> None:
    def stem_of(name: str, size: int) -> str:
        return meta_model(name, num_classes=10, in_chans=3, input_size=size).default_cfg["stem"]

    for name in ("alexnet", "vgg11", "resnet18"):
        assert stem_of(name, 95) == "small" and stem_of(name, 96) == "imagenet", name


@pytest.mark.slow
@pytest.mark.parametrize(("name", "size"), [("alexnet", 227), ("resnet50", 224)])
def test_real_forward_backward_at_paper_size(name: str, size: int) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=1000, in_chans=3)
    out = model(torch.randn(1, 3, size, size))
    assert out.shape == (1, 1000) and torch.isfinite(out).all()
    out.logsumexp(1).sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
