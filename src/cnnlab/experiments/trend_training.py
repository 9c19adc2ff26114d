"""Trend claims of Handbook chapter 11 (Part D.2): shuffling, too-large learning rates, batch
normalisation and Adagrad's shrinking step."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch

from cnnlab.engine.callbacks import Callback
from cnnlab.experiments.base import Context, Metric, TrendExperiment, register
from cnnlab.experiments.common import DEEP_NET_SCALES, StopAfter, data_for, first_below, tree
from cnnlab.experiments.training import (
    Probe,
    StepLosses,
    make_config,
    make_data,
    probe_batches,
    probed,
    train,
)
from cnnlab.experiments.verdict import Part, compare, threshold


@register
class ShuffleVsSorted(TrendExperiment):
    name = "shuffle_vs_sorted"
    section = "11.2.1"
    title = "Shuffle the training data every epoch"
    claim = (
        "Shuffling the training set before every epoch speeds up convergence and improves "
        "test accuracy compared with a fixed order."
    )
    runs = (
        "The zoo's LeNet-5 trained with adam on a Fashion-MNIST subset, visiting the data "
        "reshuffled every epoch, in a fixed class-sorted order (the worst fixed order: all "
        "of class 0, then class 1, ...), or (full run) in one fixed random order."
    )
    measurement = (
        "Test accuracy and the final loss on 1,000 training images. Verdict: "
        "shuffling beats the class-sorted order on both (seed rule)."
    )
    minutes = (1, 6)
    arms = ("shuffled", "class_sorted", "fixed_random")
    metrics: ClassVar[dict[str, Metric]] = {
        "test_acc": Metric("test accuracy"),
        "train_loss": Metric("final training loss (probe)", higher_is_better=False),
    }
    curve_labels = ("epochs", "training loss (probe)")
    scales: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"seeds": 1, "epochs": 1, "arms": ["shuffled", "class_sorted"]},
        "quick": {
            "seeds": 1,
            "epochs": 3,
            "per_class": 300,
            "test_per_class": 200,
            "arms": ["shuffled", "class_sorted"],
        },
        "full": {
            "seeds": 3,
            "epochs": 5,
            "per_class": 1000,
            "test_per_class": 500,
            "arms": ["shuffled", "class_sorted", "fixed_random"],
        },
    }

    def trial(self, ctx: Context, arm: str, seed: int) -> dict[str, Any]:
        ds = data_for(ctx, seed)
        t = tree(ctx, "lenet5")
        cfg = make_config(t, seed, ds)
        data = make_data(cfg, ds)
        labels = data.train.labels
        if arm == "class_sorted":  # a sampler is any epoch -> indices function (BatchLoader)
            order = torch.argsort(labels, stable=True)
            data.train.sampler = lambda epoch: order
        elif arm == "fixed_random":
            order = torch.randperm(labels.numel(), generator=torch.Generator().manual_seed(seed))
            data.train.sampler = lambda epoch: order
        probe = Probe(probe_batches(data, 1000), max(1, len(data.train) // 4), len(data.train))
        trial = train(ctx, arm, seed, t, ds, data=data, callbacks=[probe], note={"order": arm})
        return {
            "test_acc": trial.last.get("test_acc"),
            "train_loss": probe.points[-1][1],
            "curve": probe.curve("loss"),
        }

    def judge(self, m) -> list[Part]:
        return [
            compare(
                "shuffling gives higher test accuracy",
                m.values("shuffled", "test_acc"),
                m.values("class_sorted", "test_acc"),
                names=("shuffled", "class_sorted"),
            ),
            compare(
                "shuffling converges further (lower training loss)",
                m.values("shuffled", "train_loss"),
                m.values("class_sorted", "train_loss"),
                higher_is_better=False,
                names=("shuffled", "class_sorted"),
            ),
        ]


@register
class LargeLrExplodes(TrendExperiment):
    name = "large_lr_explodes"
    section = "11.2.2"
    title = "A too-large learning rate explodes"
    claim = (
        "With a too-large learning rate the loss explodes within the first few batches; "
        "a moderate one (0.01 or 0.001) makes it fall."
    )
    runs = (
        "The zoo's LeNet-5 with plain SGD at lr 0.001, 0.01, 0.1, 1 and 10 on a "
        "Fashion-MNIST subset, for the first 60 batches; every batch's loss is recorded "
        "(NaN/inf stops the run as diverged)."
    )
    measurement = (
        "'Exploded' = the loss became non-finite or rose above 3x its first value "
        "within the first 20 batches. Verdict: lr 10 explodes on every seed; lr 0.01 "
        "does not, and its loss over the last 10 batches is below the first batch's."
    )
    minutes = (0.5, 2)
    arms = ("lr0.001", "lr0.01", "lr0.1", "lr1", "lr10")
    metrics: ClassVar[dict[str, Metric]] = {
        "exploded": Metric("exploded (1 = yes)", higher_is_better=False),
        "final_loss": Metric("mean loss of the last 10 batches", higher_is_better=False),
    }
    curve_labels = ("batch", "training loss (log)")
    scales: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"seeds": 1, "steps": 20},
        "quick": {"seeds": 1, "steps": 60, "per_class": 300, "test_per_class": 20},
        "full": {"seeds": 3, "steps": 60, "per_class": 300, "test_per_class": 20},
    }

    def trial(self, ctx: Context, arm: str, seed: int) -> dict[str, Any]:
        ds = data_for(ctx, seed)
        t = tree(ctx, "lenet5", optim={"name": "sgd", "lr": float(arm[2:])})
        t["train"] = {"epochs": 100}  # StopAfter ends the run after `steps` batches
        losses = StepLosses()
        trial = train(ctx, arm, seed, t, ds, callbacks=[losses, StopAfter(ctx.settings["steps"])])
        ls = losses.losses
        first = ls[0] if ls else math.inf
        early = ls[:20]
        exploded = trial.diverged is not None or any(
            not math.isfinite(v) or v > 3 * first for v in early
        )
        tail = ls[-10:]
        final = sum(tail) / len(tail) if tail and trial.diverged is None else math.inf
        return {
            "exploded": float(exploded),
            "final_loss": final,
            "first_loss": first,
            "curve": {"x": list(range(1, len(ls) + 1)), "y": ls},
        }

    def judge(self, m) -> list[Part]:
        fine = [
            f < first
            for f, first in zip(
                m.values("lr0.01", "final_loss"), m.values("lr0.01", "first_loss"), strict=True
            )
        ]
        return [
            threshold(
                "lr 10 explodes within 20 batches",
                m.values("lr10", "exploded"),
                above=0.5,
                what="exploded",
            ),
            threshold(
                "lr 0.01 does not explode",
                m.values("lr0.01", "exploded"),
                below=0.5,
                what="exploded",
            ),
            threshold(
                "lr 0.01 lowers the loss", [float(f) for f in fine], above=0.5, what="loss fell"
            ),
        ]


@register
class BatchnormConvergence(TrendExperiment):
    name = "batchnorm_convergence"
    section = "11.2.3"
    title = "Batch normalisation speeds up convergence"
    claim = "Batch normalisation speeds up convergence and eases the training of deeper nets."
    runs = (
        "A 20-layer plain convnet (zoo resnet20, plain=True, reduced width, 14x14 images) "
        "with norm = bn or none, SGD + momentum (lr 0.01) on a Fashion-MNIST subset; the "
        "error on 1,000 training images is probed 8 times per epoch."
    )
    measurement = (
        "Mean probed training error over the run (the area under the learning curve: lower "
        "= faster convergence), the epochs until it first reaches 30% (the budget if never) "
        "and the final error. Verdict: BN has the lower mean error (seed rule, min effect "
        "0.02)."
    )
    minutes = (2, 10)
    arms = ("bn", "none")
    metrics: ClassVar[dict[str, Metric]] = {
        "mean_error": Metric("mean training error over the run", higher_is_better=False),
        "epochs_to_target": Metric("epochs to 30% training error", False, "epochs"),
        "train_error": Metric("final training error", higher_is_better=False),
    }
    curve_labels = ("epochs", "training error (probe)")
    scales: ClassVar[dict[str, dict[str, Any]]] = DEEP_NET_SCALES

    def trial(self, ctx: Context, arm: str, seed: int) -> dict[str, Any]:
        ds = data_for(ctx, seed)
        t = tree(ctx, "resnet20", optim={"name": "momentum", "lr": 0.01})
        t["model"]["params"].update(plain=True, norm=arm)
        _, probe = probed(ctx, arm, seed, t, ds)
        curve = probe.curve("error")
        cap = float(ctx.settings["epochs"])
        return {
            "mean_error": sum(curve["y"]) / len(curve["y"]),
            "epochs_to_target": first_below(curve, 0.3, cap),
            "train_error": curve["y"][-1],
            "curve": curve,
        }

    def judge(self, m) -> list[Part]:
        return [
            compare(
                "BN converges faster (lower mean training error)",
                m.values("bn", "mean_error"),
                m.values("none", "mean_error"),
                higher_is_better=False,
                min_effect=0.02,
                names=("bn", "none"),
            )
        ]


class EffectiveLR(Callback):
    """Median per-parameter step scale lr / (sqrt(accumulator) + eps) every ``every`` steps."""

    def __init__(self, every: int, steps_per_epoch: int) -> None:
        self.every, self.spe = max(1, every), max(1, steps_per_epoch)
        self.points: list[tuple[float, float]] = []

    def on_step_end(self, trainer: Any, state: Any) -> None:
        if state.step != 1 and state.step % self.every:
            return
        opt = trainer.optimizer
        scales = []
        for group in opt.param_groups:
            for p in group["params"]:
                st = opt.state.get(p, {})
                if "sum" in st:  # Adagrad: sum of squared gradients
                    denom = st["sum"].sqrt() + group["eps"]
                elif "exp_avg_sq" in st:  # Adam: bias-corrected second moment
                    corr = 1 - group["betas"][1] ** float(st["step"])
                    denom = (st["exp_avg_sq"] / corr).sqrt() + group["eps"]
                else:
                    continue
                scales.append((group["lr"] / denom).flatten())
        if scales:
            self.points.append((state.step / self.spe, torch.cat(scales).median().item()))


@register
class AdagradLrShrinks(TrendExperiment):
    name = "adagrad_lr_shrinks"
    section = "11.2.4"
    title = "Adagrad's learning rate shrinks towards 0"
    claim = (
        "Adagrad divides the learning rate by the root of all past squared gradients, so "
        "its effective learning rate keeps shrinking towards 0 (RMSProp/Adam use decaying "
        "averages instead)."
    )
    runs = (
        "The zoo's LeNet-5 trained with cnnlab's adagrad (lr 0.01) or adam (lr 0.001) on a "
        "Fashion-MNIST subset; the median per-weight step scale lr / (sqrt(accumulator) + "
        "eps) is read from the optimiser state during training."
    )
    measurement = (
        "Ratio of the median step scale at the end to that after the first step. "
        "Verdict: Adagrad's ratio < 0.2 on every seed, and below Adam's."
    )
    minutes = (0.5, 4)
    arms = ("adagrad", "adam")
    metrics: ClassVar[dict[str, Metric]] = {
        "scale_ratio": Metric("final / initial step scale", higher_is_better=False),
        "test_acc": Metric("test accuracy"),
    }
    curve_labels = ("epochs", "median step scale (log)")
    scales: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"seeds": 1, "epochs": 1},
        "quick": {"seeds": 1, "epochs": 3, "per_class": 200, "test_per_class": 100},
        "full": {"seeds": 3, "epochs": 6, "per_class": 500, "test_per_class": 200},
    }

    def trial(self, ctx: Context, arm: str, seed: int) -> dict[str, Any]:
        ds = data_for(ctx, seed)
        lr = 0.01 if arm == "adagrad" else 0.001
        t = tree(ctx, "lenet5", optim={"name": arm, "lr": lr})
        cfg = make_config(t, seed, ds)
        spe = len(make_data(cfg, ds).train)
        eff = EffectiveLR(max(1, spe // 4), spe)
        trial = train(ctx, arm, seed, t, ds, callbacks=[eff])
        ys = [p[1] for p in eff.points]
        return {
            "scale_ratio": ys[-1] / ys[0],
            "test_acc": trial.last.get("test_acc"),
            "curve": {"x": [p[0] for p in eff.points], "y": ys},
        }

    def judge(self, m) -> list[Part]:
        return [
            threshold(
                "Adagrad's step scale shrinks below 20%",
                m.values("adagrad", "scale_ratio"),
                below=0.2,
                what="Adagrad ratio",
            ),
            compare(
                "Adagrad shrinks more than Adam",
                m.values("adagrad", "scale_ratio"),
                m.values("adam", "scale_ratio"),
                higher_is_better=False,
                names=("adagrad", "adam"),
            ),
        ]
