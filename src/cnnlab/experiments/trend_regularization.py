"""Trend claims of Handbook chapter 10 (Part D.2): l1 against l2, max-norm and dropout."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from cnnlab.experiments.base import Context, Metric, TrendExperiment, register
from cnnlab.experiments.common import data_for, tree, weight_tensors
from cnnlab.experiments.training import accuracy, train
from cnnlab.experiments.verdict import Part, compare, threshold


@register
class L1VsL2Sparsity(TrendExperiment):
    name = "l1_vs_l2_sparsity"
    section = "10.1-10.2"
    title = "l1 gives sparse weights, l2 generalises better"
    claim = (
        "l1 regularisation makes many weights (near) zero, a sparse solution; l2 is "
        "generally the better regulariser for accuracy."
    )
    runs = (
        "The zoo's LeNet-5 trained with SGD + momentum (lr 0.01) on a Fashion-MNIST subset "
        "with no penalty, regularization.l1 = 1e-4 or regularization.l2 = 1e-3 (explicit "
        "penalties on conv/linear weights)."
    )
    measurement = (
        "Share of conv/linear weights with |w| < 1e-3, and test accuracy. Verdict: "
        "l1 is sparser than l2; l2's accuracy is higher than l1's (seed rule; at "
        "these penalty weights)."
    )
    minutes = (1, 6)
    arms = ("none", "l1", "l2")
    metrics: ClassVar[dict[str, Metric]] = {
        "sparsity": Metric("share of |w| < 1e-3"),
        "test_acc": Metric("test accuracy"),
    }
    scales: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"seeds": 1, "epochs": 1},
        "quick": {"seeds": 1, "epochs": 4, "per_class": 300, "test_per_class": 200},
        "full": {"seeds": 3, "epochs": 8, "per_class": 1000, "test_per_class": 500},
    }

    def trial(self, ctx: Context, arm: str, seed: int) -> dict[str, Any]:
        ds = data_for(ctx, seed)
        reg = {"none": {}, "l1": {"l1": 1e-4}, "l2": {"l2": 1e-3}}[arm]
        t = tree(ctx, "lenet5", optim={"name": "momentum", "lr": 0.01}, regularization=reg)
        trial = train(ctx, arm, seed, t, ds)
        ws = torch.cat([w.flatten() for w in weight_tensors(trial.model)])
        return {
            "sparsity": (ws.abs() < 1e-3).float().mean().item(),
            "test_acc": trial.last.get("test_acc"),
        }

    def judge(self, m) -> list[Part]:
        return [
            compare(
                "l1 gives sparser weights than l2",
                m.values("l1", "sparsity"),
                m.values("l2", "sparsity"),
                names=("l1", "l2"),
            ),
            compare(
                "l2 generalises better than l1",
                m.values("l2", "test_acc"),
                m.values("l1", "test_acc"),
                names=("l2", "l1"),
            ),
        ]


@register
class MaxNormLargeLr(TrendExperiment):
    name = "max_norm_large_lr"
    section = "10.3"
    title = "Max-norm survives a too-large learning rate"
    claim = (
        "The max-norm constraint keeps training from blowing up even with a too-large "
        "learning rate."
    )
    runs = (
        "The zoo's LeNet-5 with leaky ReLU units (no BN; plain ReLUs die at large rates "
        "instead of exploding) trained with SGD + momentum 0.9 at lr 0.15 on a "
        "Fashion-MNIST subset, without and with regularization.max_norm = 3 (each unit's "
        "incoming weights projected to norm <= 3 after every step)."
    )
    measurement = (
        "Whether the training loss became NaN/inf (the run stops as diverged), and the "
        "test accuracy (chance level 1/C after a divergence; reported, not judged). "
        "Verdict: without the constraint every seed blows up; with it none does."
    )
    minutes = (1, 5)
    arms = ("none", "max_norm3")
    metrics: ClassVar[dict[str, Metric]] = {
        "test_acc": Metric("test accuracy"),
        "diverged": Metric("diverged (1 = yes)", higher_is_better=False),
    }
    scales: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"seeds": 1, "epochs": 1, "lr": 0.15},
        "quick": {"seeds": 1, "epochs": 2, "per_class": 300, "test_per_class": 200, "lr": 0.15},
        "full": {"seeds": 3, "epochs": 4, "per_class": 1000, "test_per_class": 500, "lr": 0.15},
    }

    def trial(self, ctx: Context, arm: str, seed: int) -> dict[str, Any]:
        ds = data_for(ctx, seed)
        reg = {"max_norm": 3.0} if arm == "max_norm3" else {}
        t = tree(
            ctx, "lenet5", optim={"name": "momentum", "lr": ctx.settings["lr"]}, regularization=reg
        )
        t["model"]["params"] = {"activation": "leaky_relu"}
        trial = train(ctx, arm, seed, t, ds)
        chance = 1.0 / ds.num_classes
        acc = chance if trial.diverged else trial.last.get("test_acc", chance)
        return {"test_acc": acc, "diverged": float(trial.diverged is not None)}

    def judge(self, m) -> list[Part]:
        return [
            threshold(
                "the learning rate is too large: the unconstrained net blows up",
                m.values("none", "diverged"),
                above=0.5,
                what="diverged",
            ),
            threshold(
                "with max-norm the same learning rate does not blow up",
                m.values("max_norm3", "diverged"),
                below=0.5,
                what="diverged",
            ),
        ]


@register
class DropoutGeneralisation(TrendExperiment):
    name = "dropout_generalisation"
    section = "10.4"
    title = "Dropout narrows the generalisation gap"
    claim = "Dropout on the fully-connected layers improves generalisation (an implicit ensemble)."
    runs = (
        "The zoo's alexnet (small stem, width 0.125) with dropout 0 or 0.5 on its FC "
        "layers, trained long enough to overfit a small Fashion-MNIST subset (adam)."
    )
    measurement = (
        "Train - test accuracy gap (train accuracy in eval mode) and test accuracy. "
        "Verdict: dropout has the smaller gap and the higher test accuracy."
    )
    minutes = (2, 10)
    arms = ("p0", "p0.5")
    metrics: ClassVar[dict[str, Metric]] = {
        "gap": Metric("train - test accuracy", higher_is_better=False),
        "test_acc": Metric("test accuracy"),
    }
    scales: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"seeds": 1, "epochs": 2},
        "quick": {"seeds": 1, "epochs": 10, "per_class": 100, "test_per_class": 200},
        "full": {"seeds": 3, "epochs": 20, "per_class": 200, "test_per_class": 500},
    }

    def trial(self, ctx: Context, arm: str, seed: int) -> dict[str, Any]:
        ds = data_for(ctx, seed)
        t = tree(ctx, "alexnet")
        t["model"]["params"] = {
            "stem": "small",
            "width": 0.125,
            "dropout": float(arm[1:]),
            "init": "torch",
        }
        trial = train(ctx, arm, seed, t, ds)
        tr, te = accuracy(trial.model, trial.data, "train"), accuracy(trial.model, trial.data)
        return {"gap": tr - te, "test_acc": te, "train_acc": tr}

    def judge(self, m) -> list[Part]:
        return [
            compare(
                "dropout narrows the train/test gap",
                m.values("p0.5", "gap"),
                m.values("p0", "gap"),
                higher_is_better=False,
                names=("p0.5", "p0"),
            ),
            compare(
                "dropout raises test accuracy",
                m.values("p0.5", "test_acc"),
                m.values("p0", "test_acc"),
                names=("p0.5", "p0"),
            ),
        ]
