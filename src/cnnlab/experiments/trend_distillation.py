"""Trend claim of Handbook §4.5 (Part D.2): knowledge distillation and its temperature, a small
student taught by the small Alex-Net of ``trend_compression`` on a Fashion-MNIST subset."""

from __future__ import annotations

import statistics
from typing import Any, ClassVar

from cnnlab.compression import DistillationTask
from cnnlab.experiments.base import Context, Metric, TrendExperiment, register
from cnnlab.experiments.common import tree
from cnnlab.experiments.training import train
from cnnlab.experiments.trend_compression import base_trial, per_seed
from cnnlab.experiments.verdict import Part, compare


@register
class DistillationTemperature(TrendExperiment):
    name = "distillation_temperature"
    section = "4.5"
    title = "Distillation and its temperature"
    claim = (
        "Distillation lets a small student approach its teacher, and a larger temperature "
        "T generally gives higher accuracy."
    )
    runs = (
        "Teacher: zoo alexnet (small stem, width 0.25, trained twice as many epochs); "
        "student: zoo lenet5, trained on a "
        "Fashion-MNIST subset from hard labels alone ('scratch') or with cnnlab's "
        "DistillationTask (alpha 0.9, T^2-scaled soft term) at T = 1, 2, 4, 8, 20."
    )
    measurement = (
        "Student test accuracy. Verdict: T = 4 beats scratch; the mean over T >= 4 "
        "beats T = 1 (seed rule)."
    )
    minutes = (2, 12)
    arms = ("teacher", "scratch", "T1", "T2", "T4", "T8", "T20")
    metrics: ClassVar[dict[str, Metric]] = {"test_acc": Metric("test accuracy")}
    scales: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"seeds": 1, "epochs": 1, "teacher_epochs": 1, "temperatures": [1, 4]},
        "quick": {
            "seeds": 1,
            "epochs": 4,
            "teacher_epochs": 8,
            "per_class": 200,
            "test_per_class": 200,
            "temperatures": [1, 4],
        },
        "full": {
            "seeds": 3,
            "epochs": 6,
            "teacher_epochs": 12,
            "per_class": 400,
            "test_per_class": 500,
            "temperatures": [1, 2, 4, 8, 20],
        },
    }

    def arms_for(self, ctx: Context) -> list[str]:
        return ["teacher", "scratch", *(f"T{t}" for t in ctx.settings["temperatures"])]

    def run_seed(self, ctx: Context, seed: int) -> dict[str, dict[str, Any]]:
        epochs = ctx.settings.get("teacher_epochs", ctx.settings["epochs"])
        teacher = base_trial(ctx, seed, "teacher", width=0.25, epochs=epochs)
        out = {"teacher": {"test_acc": teacher.last.get("test_acc")}}
        ds = teacher.data.dataset
        t = tree(ctx, "lenet5")
        out["scratch"] = {"test_acc": train(ctx, "scratch", seed, t, ds).last.get("test_acc")}
        t_model = teacher.model.eval()
        for temp in ctx.settings["temperatures"]:
            ctx.log(f"{self.name}: T{temp}, seed {seed}")
            task = DistillationTask(t_model, temperature=float(temp), alpha=0.9)
            trial = train(
                ctx,
                f"T{temp}",
                seed,
                t,
                ds,
                task=task,
                note={"distillation": {"temperature": temp, "alpha": 0.9}},
            )
            out[f"T{temp}"] = {"test_acc": trial.last.get("test_acc")}
        return out

    def judge(self, m) -> list[Part]:
        temps = sorted(int(a[1:]) for a in m.per_seed if a.startswith("T"))
        high = [f"T{t}" for t in temps if t >= 4]
        mean_high = [statistics.fmean(row) for row in per_seed(m, high, "test_acc")]
        return [
            compare(
                "distillation (T = 4) beats training from scratch",
                m.values("T4", "test_acc"),
                m.values("scratch", "test_acc"),
                names=("T4", "scratch"),
            ),
            compare(
                "larger T gives higher accuracy (mean of T >= 4 vs T = 1)",
                mean_high,
                m.values("T1", "test_acc"),
                names=("T>=4", "T1"),
            ),
        ]
