"""The shipped ensemble configs and the study script's config are valid (no training)."""

from __future__ import annotations

import pytest

from cnnlab.ensembles.generate import build_plan, load_plan
from cnnlab.recipes import configs_root


@pytest.mark.parametrize("name", ["seeds", "snapshots", "mixed"])
def test_shipped_configs_load(name):
    plan = load_plan(configs_root() / "ensembles" / f"{name}.yaml")
    assert plan.members and all(m.config.data.val_split == 0.1 for m in plan.members)
    if name == "snapshots":
        snap = next(m for m in plan.members if m.snapshots)
        assert snap.config.schedule.name == "cosine_restarts" and snap.config.optim.lr == 0.1
    if name == "mixed":
        assert [m.config.model.name for m in plan.members] == ["cnn2", "cnn2", "lenet5"]
        assert plan.members[1].config.loss.name == "multiclass_hinge"


def test_study_config_keeps_the_training_budget_equal(load_benchmark):
    study = load_benchmark("ensembles/run_study.py")
    args = study.parse_args(["--budget-epochs", "15", "--members", "3", "--data-dir", "x"])
    plan = build_plan(study.study_config(args), data_dir=args.data_dir)
    epochs = {m.name: m.config.train.epochs for m in plan.members}
    assert epochs == {"single": 15, "seed-s0": 5, "seed-s1": 5, "seed-s2": 5, "snap": 15}
    assert plan.members[0].config.data.data_dir == "x"
    assert plan.members[0].config.data.allow_sample is False  # no silent fallback to a sample
    assert set(plan.groups) == {"single", "seeds", "snapshots"}
    with pytest.raises(SystemExit, match="must be >= --members"):
        study.study_config(study.parse_args(["--budget-epochs", "2", "--members", "3"]))
    with pytest.raises(SystemExit):  # argparse's error: "--jobs: expected >= 1, found 0"
        study.parse_args(["--jobs", "0"])


def test_study_verdict_compares_best_ensemble_with_best_single(load_benchmark):
    study = load_benchmark("ensembles/run_study.py")

    def row(acc):
        return {"test_acc": acc}

    rows = {("single", "mean", False): row(0.930), ("single", "mean", True): row(0.934),
            ("seeds", "mean", False): row(0.933), ("snapshots", "mean", True): row(0.9365),
            ("seeds", "weighted_acc", False): row(0.99)}  # fmt: skip
    # ("seeds", "weighted_acc") is not a line of the study's table: ignored
    text = study.verdict(rows, 10000)
    assert "snapshot ensemble, averaging + TTA, 93.65%) beats" in text
    assert "(single model + TTA, 93.40%): +0.25 points (+25 of 10000 test images)" in text
    rows[("single", "mean", False)] = row(0.94)
    assert (
        "does not beat the best single model of the same training budget (single model, 94.00%)"
        in study.verdict(rows, 10000)
    )
    assert "not measured" in study.verdict({("single", "mean", False): row(0.9)}, 10000)
