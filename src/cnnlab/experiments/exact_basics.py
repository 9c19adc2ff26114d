"""Exact checks of Handbook chapters 2-3 (Part D.1): convolution and pooling arithmetic, FC
layers as convolutions, receptive fields, LRN, and the Alex-Net / VGG-16 / ResNet numbers."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.experiments.base import Check, ExactExperiment, register
from cnnlab.inspect import receptive_field_of, summary
from cnnlab.models import create_model
from cnnlab.models.resnet import BasicBlock, Bottleneck
from cnnlab.models.squeezenet import Fire
from cnnlab.nn import LocalResponseNorm, conv_out_size, linear_to_conv

KERNEL = torch.tensor([[1.0, 0, 1], [0, 1, 0], [1, 0, 1]]).view(1, 1, 3, 3)
GRID = torch.arange(1.0, 26.0).view(1, 1, 5, 5)  # the 5x5 grid 1..25, row-major (seed 002)


def n_params(*modules: nn.Module) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


def meta_summary(name: str, size: int, num_classes: int = 1000):
    """Summary of a large zoo model built on the meta device (shapes only, nothing allocated)."""
    with torch.device("meta"):
        model = create_model(name, num_classes=num_classes, in_chans=3, input_size=size)
    return summary(model, (3, size, size))


@register
class ConvWorkedExample(ExactExperiment):
    name = "conv_worked_example"
    section = "2.3.1"
    title = "The worked convolution example"
    claim = (
        "The first output of the book's 3x3 convolution example is 27, and a 5x5 input "
        "convolved with a 3x3 kernel at stride 1 gives a 3x3 output."
    )
    runs = (
        "torch conv2d with the book's kernel on its first window and on the seed-002 grid "
        "1..25 (stride 1 and 2, padding 1); cnnlab.nn.conv_out_size."
    )
    measurement = "Output values and shapes against the printed numbers 27, 35, 45 and 3x3."

    def checks(self) -> list[Check]:
        window = torch.tensor([[1.0, 2, 3], [6, 7, 8], [9, 8, 7]]).view(1, 1, 3, 3)
        s1, s2 = F.conv2d(GRID, KERNEL), F.conv2d(GRID, KERNEL, stride=2)
        return [
            Check("first window of the book's example", F.conv2d(window, KERNEL).item(), 27),
            Check("5x5 input, 3x3 kernel, stride 1: output shape", list(s1.shape[2:]), [3, 3]),
            Check("conv_out_size(5, 3)", conv_out_size(5, 3), 3),
            Check("grid 1..25, stride 1, first output", s1[0, 0, 0, 0].item(), 35),
            Check("grid 1..25, stride 2, second output", s2[0, 0, 0, 1].item(), 45),
            Check("padding 1 keeps 5x5", list(F.conv2d(GRID, KERNEL, padding=1).shape[2:]), [5, 5]),
        ]


@register
class ConvOutputSize(ExactExperiment):
    name = "conv_output_size"
    section = "2.2-2.3"
    title = "Output size of a convolution"
    claim = (
        "Without padding at stride 1 the output side is H - f + 1; the general rule "
        "floor((H + 2p - f)/s) + 1 reproduces every size in Tables 3.1-3.3."
    )
    runs = (
        "cnnlab.nn.conv_out_size for stride 1 and the table rows; cnnlab.inspect.summary of "
        "the zoo's alexnet (227 px) and vgg16 (224 px) built on the meta device."
    )
    measurement = "Computed sides against H - f + 1 and the side lengths printed in the tables."

    def checks(self) -> list[Check]:
        out = [
            Check(f"H={h}, f={f}: H - f + 1", conv_out_size(h, f), h - f + 1)
            for h, f in ((5, 3), (28, 5), (32, 3), (7, 7))
        ]
        alex = meta_summary("alexnet", 227)
        sides = [r.output_shape[-1] for r in alex.layers if r.type in ("Conv2d", "MaxPool2d")]
        out.append(Check("Table 3.1 conv/pool sides", sides, [55, 27, 27, 13, 13, 13, 13, 6]))
        vgg = meta_summary("vgg16", 224)
        pools = [r.output_shape[-1] for r in vgg.layers if r.type == "MaxPool2d"]
        out.append(Check("Tables 3.2-3.3 pool sides", pools, [112, 56, 28, 14, 7]))
        out.append(Check("Table 3.1 conv1 (227 - 11)/4 + 1", conv_out_size(227, 11, 4), 55))
        return out


@register
class SamePadding(ExactExperiment):
    name = "same_padding"
    section = "11.1.2"
    title = "Same padding p = (f - 1)/2"
    claim = "At stride 1, padding p = (f - 1)/2 keeps the output the size of the input."
    runs = "nn.Conv2d with f = 1, 3, 5, 7 and p = (f - 1)/2 on 9x9 and 10x10 inputs."
    measurement = "Output sides (torch and cnnlab.nn.conv_out_size) against the input sides."

    def checks(self) -> list[Check]:
        out = []
        for f in (1, 3, 5, 7):
            for size in (9, 10):
                conv = nn.Conv2d(1, 1, f, padding=(f - 1) // 2)
                got = conv(torch.zeros(1, 1, size, size)).shape[-1]
                out.append(
                    Check(
                        f"f={f}, side {size}",
                        [got, conv_out_size(size, f, 1, (f - 1) // 2)],
                        [size, size],
                    )
                )
        return out


@register
class PoolingDiscards(ExactExperiment):
    name = "pooling_discards_75"
    section = "11.1.3"
    title = "2x2/2 pooling keeps a quarter"
    claim = "Pooling with a 2x2 window and stride 2 discards 75% of the activations."
    runs = "F.max_pool2d(2, 2) and F.avg_pool2d(2, 2) on (2, 3, 8, 8) and (1, 4, 28, 28) maps."
    measurement = "Share of elements discarded: 1 - output elements / input elements."

    def checks(self) -> list[Check]:
        out = []
        for shape in ((2, 3, 8, 8), (1, 4, 28, 28)):
            x = torch.randn(*shape)
            for fn in (F.max_pool2d, F.avg_pool2d):
                kept = fn(x, 2, 2).numel() / x.numel()
                out.append(Check(f"{fn.__name__} on {shape}", 1 - kept, 0.75))
        return out


@register
class FcAsConv(ExactExperiment):
    name = "fc_as_conv"
    section = "2.6"
    title = "Fully-connected layers are convolutions"
    claim = (
        "An FC layer after a conv layer is a global convolution with an h x w kernel, an "
        "FC layer after an FC layer is a 1x1 convolution, and VGG-16's pool5 7x7x512 -> "
        "FC-4096 is a 7x7x512x4096 convolution giving 1x1x4096."
    )
    runs = (
        "cnnlab.nn.linear_to_conv on random float64 Linear layers (after a 8x5x6 map and "
        "after a 40-d vector) and on VGG-16's fc6 shape (meta device)."
    )
    measurement = "Largest absolute difference of the outputs; kernel and output shapes."

    def checks(self) -> list[Check]:
        gen = torch.Generator().manual_seed(0)
        fc = nn.Linear(8 * 5 * 6, 16).double()
        conv = linear_to_conv(fc, (8, 5, 6))
        x = torch.randn(3, 8, 5, 6, generator=gen, dtype=torch.float64)
        diff1 = (conv(x).flatten(1) - fc(x.flatten(1))).abs().max().item()
        fc2 = nn.Linear(40, 12).double()
        v = torch.randn(4, 40, generator=gen, dtype=torch.float64)
        with torch.no_grad():
            conv2 = linear_to_conv(fc2, 40)(v.view(4, 40, 1, 1)).flatten(1)
            diff2 = (conv2 - fc2(v)).abs().max()
        fc6 = nn.Linear(7 * 7 * 512, 4096, device="meta")
        c6 = linear_to_conv(fc6, (512, 7, 7))
        out6 = c6(torch.empty(1, 512, 7, 7, device="meta"))
        return [
            Check("FC after conv = global conv: max |diff|", diff1, 0.0, 1e-10),
            Check("global conv kernel size", list(conv.kernel_size), [5, 6]),
            Check("FC after FC = 1x1 conv: max |diff|", float(diff2), 0.0, 1e-10),
            Check("VGG-16 fc6 as conv: weight shape", list(c6.weight.shape), [4096, 512, 7, 7]),
            Check("VGG-16 fc6 as conv: output shape", list(out6.shape[1:]), [4096, 1, 1]),
        ]


@register
class StackedReceptiveField(ExactExperiment):
    name = "stacked_3x3_receptive_field"
    section = "3.1.1"
    title = "Three 3x3 convolutions see 7x7"
    claim = (
        "Three stacked 3x3 stride-1 convolutions have a 7x7 receptive field and 27C^2 "
        "weights, against 49C^2 for one 7x7 convolution."
    )
    runs = (
        "cnnlab.inspect.receptive_field_of and summary on a 3-conv stack; weight counts "
        "of nn.Conv2d layers at C = 64; the input gradient of one output unit."
    )
    measurement = "Receptive field side (two ways) and weight counts against 7, 27C^2, 49C^2."

    def checks(self) -> list[Check]:
        c = 64
        stack = [nn.Conv2d(c, c, 3, bias=False) for _ in range(3)]
        net = nn.Sequential(*[nn.Conv2d(1, 1, 3, bias=False) for _ in range(3)])
        for conv in net:
            nn.init.constant_(conv.weight, 1.0)
        x = torch.zeros(1, 1, 15, 15, requires_grad=True)
        net(x)[0, 0, 4, 4].backward()
        rows, cols = torch.nonzero(x.grad[0, 0], as_tuple=True)
        seen = [int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)]
        return [
            Check("receptive_field_of([(3, 1)] * 3)", receptive_field_of([(3, 1)] * 3)[0], 7),
            Check(
                "summary receptive field of the stack",
                summary(net, (1, 15, 15)).layers[-1].receptive_field,
                7,
            ),
            Check("input patch reached by one output's gradient", seen, [7, 7]),
            Check("three 3x3 convs: weights at C=64", n_params(*stack), 27 * c * c),
            Check(
                "one 7x7 conv: weights at C=64",
                n_params(nn.Conv2d(c, c, 7, bias=False)),
                49 * c * c,
            ),
        ]


@register
class LrnIsL2Norm(ExactExperiment):
    name = "lrn_is_l2_norm"
    section = "3.2.1"
    title = "LRN as l2 normalisation"
    claim = (
        "Local response normalisation with k = 0, alpha = 1, beta = 0.5 and a window over "
        "all N channels is l2 normalisation across channels."
    )
    runs = (
        "cnnlab.nn.LocalResponseNorm(size=2N-1, alpha=1, beta=0.5, k=0) on a random "
        "float64 (2, 6, 4, 4) tensor; with the book's symmetric window of n//2 channels on "
        "each side, size 2N-1 covers all N channels for every channel d."
    )
    measurement = "Largest |LRN(a) - a/||a||_2| and the norms of the result (all 1)."

    def checks(self) -> list[Check]:
        n = 6
        a = torch.randn(2, n, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
        got = LocalResponseNorm(2 * n - 1, alpha=1.0, beta=0.5, k=0.0)(a)
        ref = a / a.norm(dim=1, keepdim=True)
        return [
            Check("max |LRN - l2 normalised|", (got - ref).abs().max().item(), 0.0, 1e-12),
            Check("max | ||b||_2 - 1 |", (got.norm(dim=1) - 1).abs().max().item(), 0.0, 1e-12),
        ]


@register
class AlexnetShapes(ExactExperiment):
    name = "alexnet_shapes"
    section = "3.2.1"
    title = "Alex-Net sizes and parameters"
    claim = "Alex-Net (Table 3.1) maps a 227x227 input through sides 227 -> 55 -> 27 -> 13 -> 6."
    runs = "cnnlab.inspect.summary of the zoo's alexnet at 3x227x227, 1000 classes (meta device)."
    measurement = (
        "Output shapes of conv1, pool1, pool2, pool5 and fc8; the ungrouped parameter "
        "count against the derived 62,378,344."
    )

    def checks(self) -> list[Check]:
        info = meta_summary("alexnet", 227)
        convs = [r.output_shape for r in info.layers if r.type == "Conv2d"]
        pools = [r.output_shape for r in info.layers if r.type == "MaxPool2d"]
        return [
            Check("conv1 output", list(convs[0]), [96, 55, 55]),
            Check(
                "pool outputs", [list(p) for p in pools], [[96, 27, 27], [256, 13, 13], [256, 6, 6]]
            ),
            Check("logits", list(info.output_shape), [1000]),
            Check("parameters (ungrouped)", info.params, 62_378_344),
        ]


@register
class Vgg16Size(ExactExperiment):
    name = "vgg16_size"
    section = "3.2.2"
    title = "VGG-16's size and cost"
    claim = (
        "VGG-16 has more than 130 million parameters, takes more than 500 MB and needs "
        "30.9 billion FLOPs per image."
    )
    runs = "cnnlab.inspect.summary of the zoo's vgg16 at 3x224x224, 1000 classes (meta device)."
    measurement = (
        "Parameters, float32 megabytes (4 bytes each) and GFLOPs (2 per multiply-add) "
        "against 138,357,544 / > 500 MB / 30.94."
    )

    def checks(self) -> list[Check]:
        info = meta_summary("vgg16", 224)
        mb = info.params * 4 / 1e6
        return [
            Check("parameters", info.params, 138_357_544),
            Check("more than 130 million", info.params > 130e6, True),
            Check("float32 MB > 500", mb > 500, True),
            Check("float32 MB", round(mb, 1), 553.4, 0.05),
            Check("GFLOPs (2 x multiply-adds)", round(2 * info.macs / 1e9, 2), 30.94),
        ]


@register
class IdentityShortcutFree(ExactExperiment):
    name = "identity_shortcut_free"
    section = "3.2.4"
    title = "Identity shortcuts cost nothing"
    claim = "When input and output shapes match, an identity shortcut adds no parameters."
    runs = (
        "cnnlab.models.resnet.BasicBlock(16 -> 16, stride 1) with and without its shortcut; "
        "the zoo's resnet20 against plain20 (option-A shortcuts)."
    )
    measurement = "Parameter counts with and without shortcuts; the block's output difference."

    def checks(self) -> list[Check]:
        res = BasicBlock(16, 16, 1, activation="relu", shortcut="A")
        plain = BasicBlock(16, 16, 1, activation="relu", shortcut=None)
        plain.load_state_dict(res.state_dict())
        x = torch.randn(2, 16, 8, 8)
        res.eval(), plain.eval()
        diff = (res(x) - torch.relu(plain.conv2(plain.conv1(x)) + x)).abs().max().item()
        r20 = n_params(create_model("resnet20", num_classes=10, in_chans=3))
        p20 = n_params(create_model("plain20", num_classes=10, in_chans=3))
        return [
            Check("block parameters with = without shortcut", n_params(res), n_params(plain)),
            Check("the shortcut module has no parameters", n_params(res.shortcut), 0),
            Check("y = F(x) + x: max |diff|", diff, 0.0, 1e-5),
            Check("resnet20 = plain20 parameters", [r20, p20], [269_722, 269_722]),
        ]


@register
class BottleneckFireSavings(ExactExperiment):
    name = "bottleneck_fire_savings"
    section = "3.2.4, 4.6"
    title = "Bottleneck and Fire modules are cheaper"
    claim = (
        "A 1x1-3x3-1x1 bottleneck block and a SqueezeNet Fire module need fewer parameters "
        "and multiply-adds than the plain 3x3 layers they replace."
    )
    runs = (
        "cnnlab.models.resnet.Bottleneck(256, width 64) against BasicBlock(256, 256); "
        "cnnlab.models.squeezenet.Fire(96, 16, 64, 64) against a 3x3 conv 96 -> 128; "
        "cnnlab.inspect.summary on 56x56 inputs."
    )
    measurement = "Parameter and multiply-add ratios (plain / compact), which must exceed 1."

    def checks(self) -> list[Check]:
        bott = Bottleneck(256, 64, 1, activation="relu", shortcut="A")
        basic = BasicBlock(256, 256, 1, activation="relu", shortcut="A")
        fire = Fire(96, 16, 64, 64, activation="relu")
        conv = nn.Sequential(nn.Conv2d(96, 128, 3, padding=1), nn.ReLU())
        sb, sp = summary(bott, (256, 56, 56)), summary(basic, (256, 56, 56))
        sf, sc = summary(fire, (96, 56, 56)), summary(conv, (96, 56, 56))
        # By hand (weights + BN gamma/beta; convs before BN have no bias):
        # bottleneck 256*64 + 64*64*9 + 64*256 + 2*(64 + 64 + 256) = 70,400;
        # basic 2 * 256*256*9 + 2*(256 + 256) = 1,180,672;
        # fire (96*16 + 16) + (16*64 + 64) + (16*64*9 + 64) = 11,920; conv 96*128*9 + 128 = 110,720.
        return [
            Check("bottleneck parameters", sb.params, 70_400),
            Check("basic block (two 3x3, 256 ch) parameters", sp.params, 1_180_672),
            Check("bottleneck: MACs basic/bottleneck > 1", sp.macs / sb.macs > 1, True),
            Check("fire module parameters", sf.params, 11_920),
            Check("3x3 conv 96 -> 128 parameters", sc.params, 110_720),
            Check("fire: MACs conv/fire > 1", sc.macs / sf.macs > 1, True),
            Check(
                "same output channels (fire, conv)",
                [sf.output_shape[0], sc.output_shape[0]],
                [128, 128],
            ),
        ]
