"""Trend claims of Handbook chapters 0-2 (Part D.2): XOR, batch size, pooling and strided
convolutions."""

from __future__ import annotations

import itertools
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from cnnlab.evaluation.tta import shift
from cnnlab.experiments.base import Context, Metric, TrendExperiment, register
from cnnlab.experiments.common import data_for, tree, write_metrics
from cnnlab.experiments.models import DownsampleNet, mlp
from cnnlab.experiments.training import (
    Probe,
    eval_loader,
    make_config,
    make_data,
    probe_batches,
    train,
)
from cnnlab.experiments.verdict import Part, compare, non_inferior, threshold
from cnnlab.registry import OPTIMIZERS
from cnnlab.training.assemble import seed_everything

ACC = {"test_acc": Metric("test accuracy")}


@register
class XorNeedsHiddenLayer(TrendExperiment):
    name = "xor_needs_hidden_layer"
    section = "0.3"
    title = "XOR needs a hidden layer"
    claim = "A linear model cannot solve XOR; a multilayer network trained by back-propagation can."
    runs = (
        "Noisy XOR points (the four corners of [-1, 1]^2 plus N(0, 0.3^2) noise, label = "
        "x1 x2 > 0); a linear softmax model against a 2-8-2 tanh MLP, both trained "
        "full-batch with cnnlab's adam optimiser (lr 0.05) on cross-entropy."
    )
    measurement = (
        "Test accuracy on fresh points. Verdict: MLP > 0.95 on every seed, and linear "
        "< 0.8 on every seed (the best line classifies at most 3 of 4 corners)."
    )
    minutes = (0.1, 0.2)
    arms = ("linear", "mlp")
    metrics = ACC
    scales: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"seeds": 1, "steps": 60, "points": 200},
        "quick": {"seeds": 2, "steps": 400, "points": 400},
        "full": {"seeds": 3, "steps": 800, "points": 400},
    }

    def trial(self, ctx: Context, arm: str, seed: int) -> dict[str, Any]:
        gen = torch.Generator().manual_seed(seed)

        def points(n: int) -> tuple[torch.Tensor, torch.Tensor]:
            corners = torch.randint(0, 2, (n, 2), generator=gen).float() * 2 - 1
            x = corners + 0.3 * torch.randn(n, 2, generator=gen)
            return x, (corners[:, 0] * corners[:, 1] > 0).long()

        (xtr, ytr), (xte, yte) = points(ctx.settings["points"]), points(1000)
        seed_everything(seed)
        model = mlp(None if arm == "linear" else 8)
        opt = OPTIMIZERS.build("adam", params=model.parameters(), lr=0.05, weight_decay=0.0)
        for _ in range(ctx.settings["steps"]):
            loss = F.cross_entropy(model(xtr), ytr)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            acc = (model(xte).argmax(1) == yte).float().mean().item()
        write_metrics(ctx, arm, seed, {"test_acc": acc, "train_loss": loss.item()})
        return {"test_acc": acc, "train_loss": loss.item()}

    def judge(self, m) -> list[Part]:
        return [
            threshold(
                "an MLP solves XOR",
                m.values("mlp", "test_acc"),
                above=0.95,
                what="MLP test accuracy",
            ),
            threshold(
                "a linear model cannot",
                m.values("linear", "test_acc"),
                below=0.8,
                what="linear test accuracy",
            ),
        ]


@register
class TinyBatchesOscillate(TrendExperiment):
    name = "tiny_batches_oscillate"
    section = "1.4"
    title = "Tiny batches make training oscillate"
    claim = "Batch sizes of 1 or 2 make mini-batch SGD oscillate; 32-256 are recommended."
    runs = (
        "Softmax regression (zoo model softmax) on a Fashion-MNIST subset, plain SGD with "
        "the same learning rate 0.01, batch sizes 1, 2, 32, 128, for the same number of "
        "images; the loss on 500 fixed training images is probed every 50 images."
    )
    measurement = (
        "Oscillation = mean rise of the probed loss between consecutive probes (0 for "
        "a curve that only falls). Verdict: batch 1 > batch 128 and batch 2 > batch "
        "32 (seed rule)."
    )
    minutes = (0.5, 3)
    arms = ("batch1", "batch2", "batch32", "batch128")
    metrics: ClassVar[dict[str, Metric]] = {
        "oscillation": Metric("mean rise of the probed loss", higher_is_better=False),
        "final_loss": Metric("final probed loss", higher_is_better=False),
    }
    curve_labels = ("epochs", "probed training loss")
    scales: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"seeds": 1, "epochs": 1, "probe_images": 16, "probe_n": 32},
        "quick": {
            "seeds": 1,
            "epochs": 1,
            "per_class": 100,
            "test_per_class": 20,
            "probe_images": 50,
            "probe_n": 500,
        },
        "full": {
            "seeds": 3,
            "epochs": 1,
            "per_class": 300,
            "test_per_class": 50,
            "probe_images": 50,
            "probe_n": 1000,
        },
    }

    def trial(self, ctx: Context, arm: str, seed: int) -> dict[str, Any]:
        bs = int(arm.removeprefix("batch"))
        s = ctx.settings
        ds = data_for(ctx, seed)
        t = tree(ctx, "softmax", optim={"name": "sgd", "lr": 0.01}, data={"batch_size": bs})
        cfg = make_config(t, seed, ds)
        data = make_data(cfg, ds)
        every = max(1, s["probe_images"] // bs)
        probe = Probe(probe_batches(data, s["probe_n"]), every, len(data.train))
        train(ctx, arm, seed, t, ds, data=data, callbacks=[probe])
        losses = [p[1] for p in probe.points]
        rises = [max(0.0, b - a) for a, b in itertools.pairwise(losses)]
        return {
            "oscillation": sum(rises) / max(1, len(rises)),
            "final_loss": losses[-1],
            "curve": probe.curve("loss"),
        }

    def judge(self, m) -> list[Part]:
        def osc(arm: str) -> list[float]:
            return m.values(arm, "oscillation")

        return [
            compare(
                "batch 1 oscillates more than batch 128",
                osc("batch1"),
                osc("batch128"),
                names=("batch1", "batch128"),
            ),
            compare(
                "batch 2 oscillates more than batch 32",
                osc("batch2"),
                osc("batch32"),
                names=("batch2", "batch32"),
            ),
        ]


@register
class PoolingShiftTolerance(TrendExperiment):
    name = "pooling_shift_tolerance"
    section = "2.4.2"
    title = "Pooling tolerates small shifts"
    claim = "Pooling makes features tolerant to small shifts of the input."
    runs = (
        "The zoo's cnn1 (conv 32@3x3, ReLU, 2x2 max pool) trained briefly on a "
        "Fashion-MNIST subset; its conv+ReLU feature maps with and without the max pool "
        "for test images shifted by 1 and 2 pixels in 4 directions."
    )
    measurement = (
        "Relative feature change ||f(x) - f(shift(x))|| / ||f(x)||, averaged over "
        "images and directions. Verdict: pooled < unpooled at 1 and 2 pixels."
    )
    minutes = (0.3, 1.5)
    arms = ("conv", "conv+maxpool")
    metrics: ClassVar[dict[str, Metric]] = {
        "rel_change_1px": Metric("relative change, 1-px shift", higher_is_better=False),
        "rel_change_2px": Metric("relative change, 2-px shift", higher_is_better=False),
    }
    scales: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"seeds": 1, "epochs": 1},
        "quick": {"seeds": 2, "epochs": 1, "per_class": 200, "test_per_class": 50},
        "full": {"seeds": 3, "epochs": 2, "per_class": 1000, "test_per_class": 100},
    }

    def run_seed(self, ctx: Context, seed: int) -> dict[str, dict[str, Any]]:
        ds = data_for(ctx, seed)
        trial = train(ctx, "cnn1", seed, tree(ctx, "cnn1"), ds)
        model = trial.model.eval()
        x = torch.cat([xb for xb, _ in eval_loader(trial.data, "test")])
        out: dict[str, dict[str, Any]] = {"conv": {}, "conv+maxpool": {}}
        with torch.no_grad():
            feats = {"conv": lambda z: model.act(model.conv(z))}
            feats["conv+maxpool"] = lambda z: F.max_pool2d(feats["conv"](z), 2)
            for px in (1, 2):
                for arm, f in feats.items():
                    ref = f(x).flatten(1)
                    rel = [
                        (
                            (f(shift(x, dy, dx)).flatten(1) - ref).norm(dim=1)
                            / ref.norm(dim=1).clamp_min(1e-12)
                        )
                        .mean()
                        .item()
                        for dy, dx in ((px, 0), (-px, 0), (0, px), (0, -px))
                    ]
                    out[arm][f"rel_change_{px}px"] = sum(rel) / len(rel)
        return out

    def judge(self, m) -> list[Part]:
        return [
            compare(
                f"pooled features change less under a {px}-pixel shift",
                m.values("conv+maxpool", f"rel_change_{px}px"),
                m.values("conv", f"rel_change_{px}px"),
                higher_is_better=False,
                names=("conv+maxpool", "conv"),
            )
            for px in (1, 2)
        ]


@register
class StridedConvVsMaxpool(TrendExperiment):
    name = "strided_conv_vs_maxpool"
    section = "2.4.2"
    title = "Strided convolutions can replace pooling"
    claim = (
        "Networks that downsample with strided convolutions instead of pooling ('all "
        "convolutional') match or exceed conv + pool networks."
    )
    runs = (
        "Two-stage convnets (conv 16, down, conv 32, down, FC) where 'down' is a 2x2 max "
        "pool or a 3x3 stride-2 conv + ReLU, trained identically with adam on a "
        "Fashion-MNIST subset."
    )
    measurement = (
        "Test accuracy. Verdict: non-inferiority of the strided net with a margin of "
        "1 point (rule in 'How verdicts are computed')."
    )
    minutes = (2, 10)
    arms = ("maxpool", "strided_conv")
    metrics = ACC
    scales: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"seeds": 1, "epochs": 1},
        "quick": {"seeds": 1, "epochs": 3, "per_class": 300, "test_per_class": 200},
        "full": {"seeds": 3, "epochs": 5, "per_class": 1500, "test_per_class": 500},
    }

    def trial(self, ctx: Context, arm: str, seed: int) -> dict[str, Any]:
        ds = data_for(ctx, seed)
        seed_everything(seed)
        kind = "max" if arm == "maxpool" else "stride"
        model = DownsampleNet(
            num_classes=ds.num_classes,
            in_chans=ds.in_chans,
            input_size=ds.image_size,
            downsample=kind,
        )
        params = sum(p.numel() for p in model.parameters())
        trial = train(
            ctx,
            arm,
            seed,
            tree(ctx),
            ds,
            model=model,
            note={"model": {"name": "DownsampleNet", "downsample": kind}},
        )
        return {"test_acc": trial.last.get("test_acc", float("nan")), "params": params}

    def judge(self, m) -> list[Part]:
        return [
            non_inferior(
                "strided convs match or exceed max pooling",
                m.values("strided_conv", "test_acc"),
                m.values("maxpool", "test_acc"),
                margin=0.01,
                names=("strided_conv", "maxpool"),
            )
        ]
