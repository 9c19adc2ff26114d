"""Exact parameter counts, each derived by hand here (independently of the model code).

Big ImageNet nets are built on the meta device: shapes only, no memory, no init cost.
"""

from __future__ import annotations

import torch

from cnnlab.models import create_model


def conv(cin: int, cout: int, k: int, bias: bool = True, groups: int = 1) -> int:
    return cout * (cin // groups) * k * k + (cout if bias else 0)


def fc(nin: int, nout: int, bias: bool = True) -> int:
    return nin * nout + (nout if bias else 0)


def bn(c: int) -> int:
    return 2 * c  # weight and bias (running stats are buffers)


def count(name: str, *, meta: bool = False, **kwargs: object) -> int:
    if meta:
        with torch.device("meta"):
            model = create_model(name, **kwargs)
    else:
        model = create_model(name, **kwargs)
    return sum(p.numel() for p in model.parameters())


def test_softmax() -> None:
    assert fc(784, 10) == 7_850
    assert count("softmax", num_classes=10, in_chans=1, input_size=28) == 7_850


def test_cnn1() -> None:
    # conv 1*3*3*32 + 32 = 320; 28 -conv3-> 26 -pool-> 13: 13*13*32 = 5408 -> 10: 54,090.
    assert conv(1, 32, 3) == 320 and fc(5408, 10) == 54_090
    assert count("cnn1", num_classes=10, in_chans=1, input_size=28) == 54_410


def test_cnn2() -> None:
    # 320 + conv 32->64: 18,496; 28 -> 26 -> 24 -pool-> 12: 12*12*64 = 9216 -> 128: 1,179,776;
    # 128 -> 10: 1,290.
    expected = conv(1, 32, 3) + conv(32, 64, 3) + fc(9216, 128) + fc(128, 10)
    assert expected == 320 + 18_496 + 1_179_776 + 1_290 == 1_199_882
    assert count("cnn2", num_classes=10, in_chans=1, input_size=28) == 1_199_882


def test_lenet5_case_study() -> None:
    # C1 156, C3 6*16*25+16 = 2,416, C5 16*120*25+120 = 48,120, F6 10,164, output 850.
    expected = conv(1, 6, 5) + conv(6, 16, 5) + conv(16, 120, 5) + fc(120, 84) + fc(84, 10)
    assert expected == 156 + 2_416 + 48_120 + 10_164 + 850 == 61_706
    assert count("lenet5", num_classes=10, in_chans=1, input_size=28) == 61_706


def test_alexnet_ungrouped() -> None:
    layers = [
        conv(3, 96, 11),  # 34,944
        conv(96, 256, 5),  # 614,656
        conv(256, 384, 3),  # 885,120
        conv(384, 384, 3),  # 1,327,488
        conv(384, 256, 3),  # 884,992
        fc(6 * 6 * 256, 4096),  # 37,752,832
        fc(4096, 4096),  # 16,781,312
        fc(4096, 1000),  # 4,097,000
    ]
    assert layers == [34_944, 614_656, 885_120, 1_327_488, 884_992, 37_752_832, 16_781_312,
                      4_097_000]  # fmt: skip
    assert sum(layers) == 62_378_344
    assert count("alexnet", meta=True, num_classes=1000, in_chans=3) == 62_378_344


def test_alexnet_two_gpu_grouping() -> None:
    # conv2, conv4, conv5 see half of their input maps: each weight tensor halves.
    # conv2 2*(128*48*25)+256 = 307,456; conv4 384*192*9+384 = 663,936; conv5 256*192*9+256 =
    # 442,624. Saves 307,200 + 663,552 + 442,368 = 1,413,120 -> 60,965,224.
    saved = (
        (conv(96, 256, 5) - conv(96, 256, 5, groups=2))
        + (conv(384, 384, 3) - conv(384, 384, 3, groups=2))
        + (conv(384, 256, 3) - conv(384, 256, 3, groups=2))
    )
    assert saved == 1_413_120
    total = count("alexnet", meta=True, num_classes=1000, in_chans=3, groups=2)
    assert total == 62_378_344 - saved == 60_965_224


def test_alexnet_small_stem_at_28() -> None:
    # conv1 3x3: 1*96*9+96 = 960; maps 28 -> 13 -> 6 -> 2: fc6 sees 2*2*256 = 1024 inputs.
    expected = (
        conv(1, 96, 3) + conv(96, 256, 5) + conv(256, 384, 3) + conv(384, 384, 3)
        + conv(384, 256, 3) + fc(1024, 4096) + fc(4096, 4096) + fc(4096, 10)
    )  # fmt: skip
    assert count("alexnet", meta=True, num_classes=10, in_chans=1, input_size=28) == expected


def vgg_expected(convs_per_block: list[int], c_in: int = 3, classes: int = 1000) -> int:
    """Conv part from the per-block conv counts (widths 64..512), then 25088->4096->4096->C."""
    total, cin = 0, c_in
    for n, width in zip(convs_per_block, [64, 128, 256, 512, 512], strict=True):
        for _ in range(n):
            total += conv(cin, width, 3)
            cin = width
    return total + fc(7 * 7 * 512, 4096) + fc(4096, 4096) + fc(4096, classes)


def test_vgg16_by_layer() -> None:
    # D: 1,792 + 36,928 | 73,856 + 147,584 | 295,168 + 2*590,080 | 1,180,160 + 2*2,359,808
    # | 3*2,359,808 = 14,714,688 conv; FC 102,764,544 + 16,781,312 + 4,097,000 = 123,642,856.
    conv_part = (1_792 + 36_928 + 73_856 + 147_584 + 295_168 + 2 * 590_080 + 1_180_160
                 + 5 * 2_359_808)  # fmt: skip
    assert conv_part == 14_714_688
    assert fc(25_088, 4096) + fc(4096, 4096) + fc(4096, 1000) == 123_642_856
    assert vgg_expected([2, 2, 3, 3, 3]) == 138_357_544
    assert count("vgg16", meta=True, num_classes=1000, in_chans=3) == 138_357_544


def test_vgg11_13_19() -> None:
    cases = {"vgg11": [1, 1, 2, 2, 2], "vgg13": [2, 2, 2, 2, 2], "vgg19": [2, 2, 4, 4, 4]}
    published = {"vgg11": 132_863_336, "vgg13": 133_047_848, "vgg19": 143_667_240}
    for name, blocks in cases.items():
        assert vgg_expected(blocks) == published[name]
        assert count(name, meta=True, num_classes=1000, in_chans=3) == published[name], name


def test_vgg_small_stem_at_28() -> None:
    # ceil-mode pools: 28 -> 14 -> 7 -> 4 -> 2 -> 1, so the classifier is 512 -> 512 -> 512 -> C.
    convs = vgg_expected([2, 2, 3, 3, 3], c_in=1) - vgg_expected([0, 0, 0, 0, 0])
    expected = convs + fc(512, 512) + fc(512, 512) + fc(512, 10)
    assert count("vgg16", num_classes=10, in_chans=1, input_size=28) == expected


def test_vgg_small_case_study() -> None:
    # Convs (no bias, BN follows): 288 + 9,216 + 18,432 + 36,864 + 73,728 + 147,456 = 285,984;
    # BN2d 2*(32+32+64+64+128+128) = 896; 28 -> 14 -> 7 -> 3: 3*3*128 = 1152 flat features;
    # FC (no bias, BN1d follows) 1152*512 + 512*128 = 655,360; BN1d 2*(512+128) = 1,280;
    # output 128*10+10 = 1,290. Total 944,810 (BASELINES model 5).
    widths = [(1, 32), (32, 32), (32, 64), (64, 64), (64, 128), (128, 128)]
    convs = sum(conv(i, o, 3, bias=False) + bn(o) for i, o in widths)
    fcs = fc(1152, 512, bias=False) + bn(512) + fc(512, 128, bias=False) + bn(128) + fc(128, 10)
    assert convs == 285_984 + 896 and fcs == 655_360 + 1_280 + 1_290
    assert convs + fcs == 944_810
    assert count("vgg_small", num_classes=10, in_chans=1, input_size=28) == 944_810


def basic_block(cin: int, cout: int, stride: int, shortcut: str = "B") -> int:
    proj = conv(cin, cout, 1, bias=False) + bn(cout) if shortcut == "B" else 0
    body = conv(cin, cout, 3, bias=False) + bn(cout) + conv(cout, cout, 3, bias=False) + bn(cout)
    return body + (proj if (cin != cout or stride != 1) else 0)


def bottleneck(cin: int, width: int, stride: int) -> int:
    cout = 4 * width
    body = (conv(cin, width, 1, bias=False) + bn(width) + conv(width, width, 3, bias=False)
            + bn(width) + conv(width, cout, 1, bias=False) + bn(cout))  # fmt: skip
    proj = conv(cin, cout, 1, bias=False) + bn(cout) if (cin != cout or stride != 1) else 0
    return body + proj


def resnet_imagenet_expected(layers: list[int], block: str, classes: int = 1000) -> int:
    total = conv(3, 64, 7, bias=False) + bn(64)  # 9,408 + 128
    cin = 64
    for i, (n, width) in enumerate(zip(layers, [64, 128, 256, 512], strict=True)):
        for j in range(n):
            stride = 2 if i > 0 and j == 0 else 1
            if block == "basic":
                total, cin = total + basic_block(cin, width, stride), width
            else:
                total, cin = total + bottleneck(cin, width, stride), 4 * width
    return total + fc(cin, classes)


def test_resnet_imagenet_counts() -> None:
    torchvision = {
        "resnet18": ([2, 2, 2, 2], "basic", 11_689_512),
        "resnet34": ([3, 4, 6, 3], "basic", 21_797_672),
        "resnet50": ([3, 4, 6, 3], "bottleneck", 25_557_032),
        "resnet101": ([3, 4, 23, 3], "bottleneck", 44_549_160),
        "resnet152": ([3, 8, 36, 3], "bottleneck", 60_192_808),
    }
    for name, (layers, block, published) in torchvision.items():
        assert resnet_imagenet_expected(layers, block) == published, name
        assert count(name, meta=True, num_classes=1000, in_chans=3) == published, name


def test_resnet18_first_stage_by_hand() -> None:
    # Stem 7*7*3*64 = 9,408 + BN 128; stage 1: 4 convs of 3*3*64*64 = 36,864 + 4 BN of 128.
    assert conv(3, 64, 7, bias=False) == 9_408
    assert 2 * basic_block(64, 64, 1) == 4 * (36_864 + 128)


def cifar_expected(n: int, in_chans: int, shortcut: str) -> int:
    total = conv(in_chans, 16, 3, bias=False) + bn(16)
    cin = 16
    for i, width in enumerate([16, 32, 64]):
        for j in range(n):
            total += basic_block(cin, width, 2 if i > 0 and j == 0 else 1, shortcut)
            cin = width
    return total + fc(64, 10)


def test_resnet20_counts() -> None:
    # Option A (paper, default): stem 432 + 32; stage 1: 6 * (2,304 + 32) = 14,016;
    # stage 2: 4,608 + 5*9,216 + 6*64 = 51,072; stage 3: 18,432 + 5*36,864 + 6*128 = 203,520;
    # FC 650. Total 269,722 (3 channels). Option B adds the two projections
    # 16*32 + 64 = 576 and 32*64 + 128 = 2,176: 272,474 (BASELINES model 6 at 1 channel:
    # 272,474 - 2*3*3*16 = 272,186).
    assert cifar_expected(3, 3, "A") == 432 + 32 + 14_016 + 51_072 + 203_520 + 650 == 269_722
    assert cifar_expected(3, 3, "B") == 269_722 + 576 + 2_176 == 272_474
    assert cifar_expected(3, 1, "B") == 272_186
    kw = {"num_classes": 10}
    assert count("resnet20", in_chans=3, **kw) == 269_722
    assert count("resnet20", in_chans=1, input_size=28, **kw) == 269_434
    assert count("resnet20", in_chans=3, shortcut="B", **kw) == 272_474
    assert count("resnet20", in_chans=1, input_size=28, shortcut="B", **kw) == 272_186
    # A plain net has the same parameters as option A (its shortcuts are parameter-free).
    assert count("resnet20", in_chans=3, plain=True, **kw) == 269_722


def test_other_cifar_resnets() -> None:
    for depth, n in {32: 5, 44: 7, 56: 9, 110: 18}.items():
        assert count(f"resnet{depth}", meta=True, num_classes=10, in_chans=3) == cifar_expected(
            n, 3, "A"
        ), depth
    assert cifar_expected(9, 3, "A") == 853_018 and cifar_expected(18, 3, "A") == 1_727_962
