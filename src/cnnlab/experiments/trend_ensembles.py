"""Trend claims of Handbook chapters 12-13 (Part D.2): cost-sensitive weights for imbalanced
data, test-time augmentation and snapshot ensembles."""

from __future__ import annotations

import math
from typing import Any, ClassVar

from cnnlab.ensembles import TTA, Ensemble, SnapshotSaver
from cnnlab.evaluation.evaluate import evaluate
from cnnlab.experiments.base import Context, Metric, TrendExperiment, register
from cnnlab.experiments.common import data_for, tree
from cnnlab.experiments.training import eval_loader, make_config, train
from cnnlab.experiments.verdict import Part, compare
from cnnlab.training.assemble import model_spec_of


@register
class CostSensitiveMinority(TrendExperiment):
    name = "cost_sensitive_minority"
    section = "12.2"
    title = "Cost-sensitive weights help minority classes"
    claim = (
        "Raising the misclassification cost of minority classes in the objective "
        "(cost-sensitive learning) improves their recognition."
    )
    runs = (
        "The zoo's LeNet-5 trained with adam on a Fashion-MNIST subset made imbalanced "
        "with cnnlab's data.imbalance (step profile: the second half of the classes keeps "
        "1/20 of its images), with plain cross_entropy or with class_weights = balanced "
        "(weight N / (C n_c)); balanced test set."
    )
    measurement = (
        "Mean recall of the minority classes on the test set, and test accuracy. "
        "Verdict: weighting raises the minority recall (seed rule)."
    )
    minutes = (1, 6)
    arms = ("plain", "weighted")
    metrics: ClassVar[dict[str, Metric]] = {
        "minority_recall": Metric("mean minority-class recall"),
        "test_acc": Metric("test accuracy"),
    }
    scales: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"seeds": 1, "epochs": 2, "imbalance": 4},
        "quick": {
            "seeds": 1,
            "epochs": 4,
            "per_class": 600,
            "test_per_class": 200,
            "imbalance": 20,
        },
        "full": {
            "seeds": 3,
            "epochs": 8,
            "per_class": 2000,
            "test_per_class": 500,
            "imbalance": 20,
        },
    }

    def trial(self, ctx: Context, arm: str, seed: int) -> dict[str, Any]:
        ds = data_for(ctx, seed)
        imb = {"profile": "step", "imbalance": ctx.settings["imbalance"], "seed": seed}
        loss: dict[str, Any] = {"name": "cross_entropy"}
        if arm == "weighted":
            loss["params"] = {"class_weights": "balanced"}
        trial = train(ctx, arm, seed, tree(ctx, "lenet5", data={"imbalance": imb}, loss=loss), ds)
        res = evaluate(trial.model, eval_loader(trial.data), num_classes=ds.num_classes)
        recall = res.report()["recall"]
        minority = list(range(math.ceil(ds.num_classes / 2), ds.num_classes))
        return {
            "minority_recall": sum(recall[c] for c in minority) / len(minority),
            "test_acc": res.accuracy,
        }

    def judge(self, m) -> list[Part]:
        return [
            compare(
                "class weights raise minority-class recall",
                m.values("weighted", "minority_recall"),
                m.values("plain", "minority_recall"),
                names=("weighted", "plain"),
            )
        ]


@register
class TtaImproves(TrendExperiment):
    name = "tta_improves"
    section = "13.1.1"
    title = "Test-time augmentation"
    claim = (
        "Averaging the predictions over augmented copies of a test image (test-time "
        "augmentation) improves accuracy over a single view."
    )
    runs = (
        "The zoo's LeNet-5 trained with adam and augmentation (hflip, random_crop with "
        "2-pixel padding) on a Fashion-MNIST subset; evaluated on the plain test image and "
        "with cnnlab's TTA over the 'flip' (2 views) and 'flip_shift' (10 views) presets."
    )
    measurement = "Test accuracy. Verdict: 10-view TTA beats the single view (seed rule)."
    minutes = (1, 6)
    arms = ("single", "tta_flip", "tta_flip_shift")
    metrics: ClassVar[dict[str, Metric]] = {"test_acc": Metric("test accuracy")}
    scales: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"seeds": 1, "epochs": 1},
        "quick": {"seeds": 1, "epochs": 4, "per_class": 300, "test_per_class": 300},
        "full": {"seeds": 3, "epochs": 8, "per_class": 1000, "test_per_class": 1000},
    }

    def run_seed(self, ctx: Context, seed: int) -> dict[str, dict[str, Any]]:
        ds = data_for(ctx, seed)
        aug = ["hflip", {"name": "random_crop", "padding": 2}]
        trial = train(ctx, "lenet5+aug", seed, tree(ctx, "lenet5", data={"augment": aug}), ds)
        model, k = trial.model.eval(), ds.num_classes
        test = eval_loader(trial.data)
        out = {"single": {"test_acc": evaluate(model, test, num_classes=k).accuracy}}
        for preset in ("flip", "flip_shift"):
            tta = TTA(model, preset)
            out[f"tta_{preset}"] = {"test_acc": evaluate(tta, test, num_classes=k).accuracy}
        return out

    def judge(self, m) -> list[Part]:
        return [
            compare(
                "10-view TTA beats a single view",
                m.values("tta_flip_shift", "test_acc"),
                m.values("single", "test_acc"),
                names=("tta_flip_shift", "single"),
            )
        ]


@register
class SnapshotEnsemble(TrendExperiment):
    name = "snapshot_ensemble"
    section = "13.2.1"
    title = "Snapshot ensembles at no extra cost"
    claim = (
        "One training run with cyclic cosine restarts yields M snapshot models whose "
        "ensemble beats a single model trained with the same budget."
    )
    runs = (
        "The zoo's LeNet-5 with SGD + momentum (eta_0 = 0.1) for the same number of epochs "
        "on a Fashion-MNIST subset: one cosine cycle (single model) against "
        "cosine_restarts with M cycles, saving a snapshot at every cycle end "
        "(cnnlab.ensembles.SnapshotSaver) and averaging the last M-1 "
        "(Ensemble.from_snapshots)."
    )
    measurement = (
        "Test accuracy of the single model, of the snapshot ensemble and of the last "
        "snapshot alone. Verdict: the ensemble beats the single model (seed rule)."
    )
    minutes = (1, 8)
    arms = ("single", "snapshot_ensemble", "last_snapshot")
    metrics: ClassVar[dict[str, Metric]] = {"test_acc": Metric("test accuracy")}
    scales: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"seeds": 1, "epochs": 2, "cycles": 2},
        "quick": {"seeds": 1, "epochs": 6, "per_class": 300, "test_per_class": 300, "cycles": 3},
        "full": {"seeds": 3, "epochs": 12, "per_class": 1000, "test_per_class": 1000, "cycles": 4},
    }

    def run_seed(self, ctx: Context, seed: int) -> dict[str, dict[str, Any]]:
        ds = data_for(ctx, seed)
        optim = {"name": "momentum", "lr": 0.1}
        single = train(
            ctx, "single", seed, tree(ctx, "lenet5", optim=optim, schedule={"name": "cosine"}), ds
        )
        cycles = ctx.settings["cycles"]
        t = tree(
            ctx,
            "lenet5",
            optim=optim,
            schedule={"name": "cosine_restarts", "params": {"cycles": cycles}},
        )
        spec = model_spec_of(make_config(t, seed, ds), ds)  # stored in every snapshot file
        saver = SnapshotSaver(ctx.run_dir("snapshots", seed), cycles=cycles, spec=spec)
        snap = train(ctx, "snapshots", seed, t, ds, callbacks=[saver])
        k_models = max(1, len(saver.saved) - 1)  # the first snapshot is the weakest
        test = eval_loader(snap.data)
        ens = Ensemble.from_snapshots(saver.run_dir, last=k_models)
        last = Ensemble.from_snapshots(saver.run_dir, last=1)
        acc = lambda mdl: evaluate(mdl, test, num_classes=ds.num_classes).accuracy  # noqa: E731
        return {
            "single": {"test_acc": single.last.get("test_acc")},
            "snapshot_ensemble": {"test_acc": acc(ens), "members": float(k_models)},
            "last_snapshot": {"test_acc": acc(last)},
        }

    def judge(self, m) -> list[Part]:
        return [
            compare(
                "the snapshot ensemble beats the single model",
                m.values("snapshot_ensemble", "test_acc"),
                m.values("single", "test_acc"),
                names=("snapshot_ensemble", "single"),
            )
        ]
