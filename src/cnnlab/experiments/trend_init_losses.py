"""Trend claims of Handbook chapters 7 and 9 (Part D.2): all-zero and He/Xavier
initialisation, ramp loss under label noise, L-Softmax margins, center loss, Tukey's biweight."""

from __future__ import annotations

import math
import warnings
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from cnnlab.experiments.base import Context, Metric, TrendExperiment, register
from cnnlab.experiments.common import (
    data_for,
    features_and_labels,
    steps_per_epoch,
    tree,
    weight_tensors,
    write_metrics,
)
from cnnlab.experiments.training import eval_loader, probed, train
from cnnlab.experiments.verdict import Part, compare, threshold
from cnnlab.losses import tukey_biweight
from cnnlab.losses.regression import mad_scale
from cnnlab.registry import OPTIMIZERS

ACC = {"test_acc": Metric("test accuracy")}


def unit_diversity(model: torch.nn.Module) -> float:
    """Largest spread between the units of a layer: max over layers of the std across output
    units of each incoming weight, averaged (0 when all units of every layer are identical)."""
    worst = 0.0
    for w in weight_tensors(model):
        rows = w.flatten(1)  # (units, fan_in)
        if rows.shape[0] > 1:
            worst = max(worst, rows.std(dim=0).mean().item())
    return worst


@register
class ZeroInitSymmetry(TrendExperiment):
    name = "zero_init_symmetry"
    section = "7.1"
    title = "All-zero initialisation cannot train"
    claim = (
        "With all-zero initial weights every neuron computes the same output and gets the "
        "same gradient, so the units stay identical and the network cannot learn."
    )
    runs = (
        "The zoo's LeNet-5 initialised through model.init = zeros (all conv/linear weights "
        "and biases 0) or kaiming_normal, trained with adam on a Fashion-MNIST subset."
    )
    measurement = (
        "Unit diversity after training (max over layers of the mean std across "
        "units; 0 = identical units) and test accuracy. Verdict: diversity < 1e-6 "
        "with zero init on every seed; He init beats it by > 20 points."
    )
    minutes = (0.5, 3)
    arms = ("zeros", "kaiming_normal")
    metrics: ClassVar[dict[str, Metric]] = {
        "test_acc": Metric("test accuracy"),
        "diversity": Metric("unit diversity after training"),
    }
    scales: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"seeds": 1, "epochs": 1},
        "quick": {"seeds": 1, "epochs": 2, "per_class": 200, "test_per_class": 100},
        "full": {"seeds": 3, "epochs": 3, "per_class": 500, "test_per_class": 200},
    }

    def trial(self, ctx: Context, arm: str, seed: int) -> dict[str, Any]:
        ds = data_for(ctx, seed)
        t = tree(ctx, "lenet5")
        t["model"]["init"] = arm
        with warnings.catch_warnings():  # cnnlab warns about zero weights: that is the point
            warnings.simplefilter("ignore")
            trial = train(ctx, arm, seed, t, ds)
        return {"test_acc": trial.last.get("test_acc"), "diversity": unit_diversity(trial.model)}

    def judge(self, m) -> list[Part]:
        return [
            threshold(
                "zero-initialised units stay identical",
                m.values("zeros", "diversity"),
                below=1e-6,
                what="unit diversity",
            ),
            compare(
                "the zero-initialised net cannot learn (He init far better)",
                m.values("kaiming_normal", "test_acc"),
                m.values("zeros", "test_acc"),
                min_effect=0.2,
                names=("kaiming_normal", "zeros"),
            ),
        ]


@register
class HeVsXavierDeep(TrendExperiment):
    name = "he_vs_xavier_deep"
    section = "7.2"
    title = "He beats Xavier in deep plain ReLU nets"
    claim = (
        "For deep ReLU networks He initialisation beats Xavier: at 33 layers Xavier does "
        "not converge while He does."
    )
    runs = (
        "A 32-layer plain ReLU convnet without BN (zoo resnet32, plain=True, norm=none, "
        "reduced width, 14x14 images) initialised by model.init = kaiming_normal or "
        "xavier_normal, SGD with momentum 0.9 and lr 0.003 on a Fashion-MNIST subset."
    )
    measurement = (
        "Final error on 1,000 training images (probed during training). Verdict: He "
        "lower than Xavier by > 10 points; Xavier's error stays > 0.8 (no "
        "convergence)."
    )
    minutes = (2, 12)
    arms = ("kaiming_normal", "xavier_normal")
    metrics: ClassVar[dict[str, Metric]] = {
        "train_error": Metric("training error", higher_is_better=False),
        "test_acc": Metric("test accuracy"),
    }
    curve_labels = ("epochs", "training error (probe)")
    scales: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"seeds": 1, "epochs": 1, "lr": 0.003, "model_params": {"width": 0.25}},
        "quick": {
            "seeds": 1,
            "epochs": 4,
            "per_class": 400,
            "test_per_class": 50,
            "image_size": 14,
            "lr": 0.003,
            "model_params": {"width": 0.5},
        },
        "full": {
            "seeds": 3,
            "epochs": 5,
            "per_class": 800,
            "test_per_class": 100,
            "image_size": 14,
            "lr": 0.003,
            "model_params": {"width": 0.5},
        },
    }

    def trial(self, ctx: Context, arm: str, seed: int) -> dict[str, Any]:
        ds = data_for(ctx, seed)
        t = tree(ctx, "resnet32", optim={"name": "momentum", "lr": ctx.settings["lr"]})
        t["model"]["params"].update(plain=True, norm="none")
        t["model"]["init"] = arm
        trial, probe = probed(ctx, arm, seed, t, ds)
        err = probe.points[-1][2] if trial.diverged is None else 1.0
        return {
            "train_error": err,
            "test_acc": trial.last.get("test_acc", 0.0),
            "diverged": float(trial.diverged is not None),
            "curve": probe.curve("error"),
        }

    def judge(self, m) -> list[Part]:
        return [
            compare(
                "He trains the deep plain net better than Xavier",
                m.values("kaiming_normal", "train_error"),
                m.values("xavier_normal", "train_error"),
                higher_is_better=False,
                min_effect=0.1,
                names=("kaiming_normal", "xavier_normal"),
            ),
            threshold(
                "Xavier does not converge",
                m.values("xavier_normal", "train_error"),
                above=0.8,
                what="Xavier training error",
            ),
        ]


@register
class RampLabelNoise(TrendExperiment):
    name = "ramp_label_noise"
    section = "9.1.3"
    title = "Ramp loss under label noise"
    claim = (
        "The ramp loss (a truncated hinge) is robust to noisy labels and outliers, which "
        "dominate the hinge loss."
    )
    runs = (
        "The zoo's LeNet-5 trained with adam on a Fashion-MNIST subset whose training "
        "labels were flipped to a random other class with probability 0.4; losses: "
        "cross_entropy, multiclass_hinge and ramp (both in the Crammer-Singer margin form, "
        "so ramp is exactly that hinge truncated at s = -1/(C-1))."
    )
    measurement = "Clean test accuracy. Verdict: ramp beats hinge (seed rule); CE is reported."
    minutes = (2, 10)
    arms = ("cross_entropy", "hinge", "ramp")
    metrics = ACC
    scales: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"seeds": 1, "epochs": 1, "label_noise": 0.4},
        "quick": {
            "seeds": 1,
            "epochs": 5,
            "per_class": 300,
            "test_per_class": 200,
            "label_noise": 0.4,
        },
        "full": {
            "seeds": 3,
            "epochs": 10,
            "per_class": 600,
            "test_per_class": 500,
            "label_noise": 0.4,
        },
    }

    def trial(self, ctx: Context, arm: str, seed: int) -> dict[str, Any]:
        ds = data_for(ctx, seed)
        loss = {
            "cross_entropy": {"name": "cross_entropy"},
            "hinge": {"name": "multiclass_hinge", "params": {"form": "crammer_singer"}},
            "ramp": {"name": "ramp", "params": {"form": "crammer_singer"}},
        }[arm]
        trial = train(
            ctx,
            arm,
            seed,
            tree(ctx, "lenet5", loss=loss),
            ds,
            note={"label_noise": ctx.settings["label_noise"]},
        )
        return {"test_acc": trial.last.get("test_acc")}

    def judge(self, m) -> list[Part]:
        return [
            compare(
                "ramp beats hinge under label noise",
                m.values("ramp", "test_acc"),
                m.values("hinge", "test_acc"),
                names=("ramp", "hinge"),
            )
        ]


def angular_margin(model: torch.nn.Module, loader) -> float:
    """Mean over test samples of min_{j != y} angle(x, W_j) - angle(x, W_y), in degrees."""
    feats, labels = features_and_labels(model, loader)
    w = model.head.weight.detach().float()
    cos = F.normalize(feats, dim=1) @ F.normalize(w, dim=1).t()  # (N, C)
    ang = torch.rad2deg(torch.acos(cos.clamp(-1, 1)))
    own = ang.gather(1, labels[:, None]).squeeze(1)
    other = ang.scatter(1, labels[:, None], float("inf")).min(dim=1).values
    return (other - own).mean().item()


@register
class LSoftmaxMargin(TrendExperiment):
    name = "l_softmax_margin"
    section = "9.1.4"
    title = "L-Softmax enlarges margins"
    claim = (
        "The large-margin softmax loss enlarges the angular margin between classes, "
        "reduces overfitting and beats the softmax (CE) loss."
    )
    runs = (
        "The zoo's LeNet-5 trained with adam on a Fashion-MNIST subset with cnnlab's "
        "l_softmax loss at m = 1 (= softmax CE) and m = 2 (and 3 in the full run), with "
        "the paper's lambda annealing (base 1000, power 35) reaching ~0 by the end."
    )
    measurement = (
        "Angular margin of test features to the classifier weights (degrees) and "
        "test accuracy. Verdict: m = 2 has the larger margin and the higher accuracy "
        "(seed rule)."
    )
    minutes = (1, 8)
    arms = ("m1", "m2", "m3")
    metrics: ClassVar[dict[str, Metric]] = {
        "margin_deg": Metric("angular margin (degrees)"),
        "test_acc": Metric("test accuracy"),
    }
    scales: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"seeds": 1, "epochs": 1, "arms": ["m1", "m2"]},
        "quick": {
            "seeds": 1,
            "epochs": 4,
            "per_class": 300,
            "test_per_class": 200,
            "arms": ["m1", "m2"],
        },
        "full": {
            "seeds": 3,
            "epochs": 8,
            "per_class": 1000,
            "test_per_class": 500,
            "arms": ["m1", "m2", "m3"],
        },
    }

    def trial(self, ctx: Context, arm: str, seed: int) -> dict[str, Any]:
        ds = data_for(ctx, seed)
        m = int(arm[1:])
        t = tree(ctx, "lenet5")
        steps = ctx.settings["epochs"] * steps_per_epoch(
            ds.train_labels.numel(), t["data"]["batch_size"]
        )
        # (1 + gamma * steps)^-35 * 1000 ~ 1e-3 at the end: pure L-Softmax for the last part.
        params = {
            "m": m,
            "lambda_base": 1000.0,
            "lambda_power": 35.0,
            "lambda_gamma": (1e6 ** (1 / 35) - 1) / steps,
        }
        t["loss"] = {"name": "l_softmax", "params": params if m > 1 else {"m": 1}}
        trial = train(ctx, arm, seed, t, ds)
        margin = angular_margin(trial.model, eval_loader(trial.data, "test"))
        return {"margin_deg": margin, "test_acc": trial.last.get("test_acc")}

    def judge(self, m) -> list[Part]:
        return [
            compare(
                f"m = 2 has a larger {what} than softmax (m = 1)",
                m.values("m2", key),
                m.values("m1", key),
                names=("m2", "m1"),
            )
            for key, what in (("margin_deg", "angular margin"), ("test_acc", "accuracy"))
        ]


def intra_inter_ratio(feats: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean distance to the own class mean / mean distance between class means."""
    classes = torch.unique(labels)
    means = torch.stack([feats[labels == c].mean(0) for c in classes])  # (K, D)
    idx = torch.searchsorted(classes, labels)
    intra = (feats - means[idx]).norm(dim=1).mean()
    inter = torch.pdist(means).mean()
    return (intra / inter.clamp_min(1e-12)).item()


@register
class CenterLossClusters(TrendExperiment):
    name = "center_loss_clusters"
    section = "9.1.5"
    title = "Center loss tightens clusters"
    claim = (
        "Adding center loss (weight lambda) to the softmax loss pulls deep features to "
        "their class centres: larger lambda gives tighter clusters, and CE + center loss "
        "beats CE alone."
    )
    runs = (
        "The zoo's LeNet-5 (84-d features before the classifier) trained with adam on a "
        "Fashion-MNIST subset with cross_entropy (lambda = 0) or cnnlab's center loss at "
        "lambda = 0.01 and 0.1 (centre update rate 0.5)."
    )
    measurement = (
        "Intra/inter-class distance ratio of the test features (mean distance to the "
        "own class mean / mean distance between class means) and test accuracy. "
        "Verdict: lambda 0.1 gives the lower ratio and the higher accuracy."
    )
    minutes = (1, 8)
    arms = ("lam0", "lam0.01", "lam0.1")
    metrics: ClassVar[dict[str, Metric]] = {
        "ratio": Metric("intra/inter distance ratio", higher_is_better=False),
        "test_acc": Metric("test accuracy"),
    }
    scales: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"seeds": 1, "epochs": 1, "arms": ["lam0", "lam0.1"]},
        "quick": {
            "seeds": 1,
            "epochs": 4,
            "per_class": 300,
            "test_per_class": 200,
            "arms": ["lam0", "lam0.1"],
        },
        "full": {
            "seeds": 3,
            "epochs": 8,
            "per_class": 1000,
            "test_per_class": 500,
            "arms": ["lam0", "lam0.01", "lam0.1"],
        },
    }

    def trial(self, ctx: Context, arm: str, seed: int) -> dict[str, Any]:
        ds = data_for(ctx, seed)
        lam = float(arm[3:])
        loss = (
            {"name": "cross_entropy"}
            if lam == 0
            else {"name": "center", "params": {"lam": lam, "alpha": 0.5}}
        )
        trial = train(ctx, arm, seed, tree(ctx, "lenet5", loss=loss), ds)
        feats, labels = features_and_labels(trial.model, eval_loader(trial.data, "test"))
        return {"ratio": intra_inter_ratio(feats, labels), "test_acc": trial.last.get("test_acc")}

    def judge(self, m) -> list[Part]:
        return [
            compare(
                "center loss tightens the clusters",
                m.values("lam0.1", "ratio"),
                m.values("lam0", "ratio"),
                higher_is_better=False,
                names=("lam0.1", "lam0"),
            ),
            compare(
                "CE + center loss beats CE",
                m.values("lam0.1", "test_acc"),
                m.values("lam0", "test_acc"),
                names=("lam0.1", "lam0"),
            ),
        ]


@register
class TukeyOutliers(TrendExperiment):
    name = "tukey_outliers"
    section = "9.2.3"
    title = "Tukey's biweight resists outliers"
    claim = "Tukey's biweight loss is robust to outliers in regression targets, unlike l2."
    runs = (
        "Linear regression y = w.x + b + N(0, 0.1^2) with 5 inputs, 20% of the training "
        "targets replaced by gross outliers (+-U(10, 30)); a linear model fitted full-batch "
        "with cnnlab's adam optimiser on l2, l1 or Tukey's biweight (cnnlab.losses."
        "tukey_biweight, c = 4.6851, residuals scaled by 1.4826 x MAD)."
    )
    measurement = "RMSE on clean test targets. Verdict: Tukey below l2 (seed rule); l1 is reported."
    minutes = (0.1, 0.3)
    arms = ("l2", "l1", "tukey")
    metrics: ClassVar[dict[str, Metric]] = {
        "test_rmse": Metric("clean test RMSE", higher_is_better=False)
    }
    scales: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"seeds": 1, "steps": 100, "n": 200},
        "quick": {"seeds": 2, "steps": 1500, "n": 500},
        "full": {"seeds": 3, "steps": 3000, "n": 1000},
    }

    def trial(self, ctx: Context, arm: str, seed: int) -> dict[str, Any]:
        gen = torch.Generator().manual_seed(seed)
        n = ctx.settings["n"]
        w_true, b_true = torch.randn(5, generator=gen), 0.5
        x, xt = torch.randn(n, 5, generator=gen), torch.randn(1000, 5, generator=gen)
        y = x @ w_true + b_true + 0.1 * torch.randn(n, generator=gen)
        bad = torch.rand(n, generator=gen) < 0.2
        sign = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
        y = torch.where(bad, y + sign * (10 + 20 * torch.rand(n, generator=gen)), y)
        torch.manual_seed(seed)
        model = torch.nn.Linear(5, 1)
        opt = OPTIMIZERS.build("adam", params=model.parameters(), lr=0.01, weight_decay=0.0)
        for _ in range(ctx.settings["steps"]):
            r = model(x).squeeze(1) - y
            if arm == "l2":
                loss = r.pow(2).mean()
            elif arm == "l1":
                loss = r.abs().mean()
            else:
                loss = tukey_biweight(r / mad_scale(r, 1e-3)).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            rmse = math.sqrt((model(xt).squeeze(1) - (xt @ w_true + b_true)).pow(2).mean().item())
        write_metrics(ctx, arm, seed, {"test_rmse": rmse, "outliers": int(bad.sum())})
        return {"test_rmse": rmse}

    def judge(self, m) -> list[Part]:
        return [
            compare(
                "Tukey's biweight beats l2 with outliers",
                m.values("tukey", "test_rmse"),
                m.values("l2", "test_rmse"),
                higher_is_better=False,
                names=("tukey", "l2"),
            )
        ]
