"""`cnnlab ensemble`: config validation, generation, combination, results, reuse."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import yaml

from cnnlab.cli.main import main
from cnnlab.config import ConfigError
from cnnlab.ensembles import Ensemble
from cnnlab.ensembles.generate import build_plan
from cnnlab.ensembles.loading import build_eval_data
from cnnlab.ensembles.workflow import run_ensemble
from cnnlab.evaluation.evaluate import evaluate

BASE = {
    "data": {
        "dataset": "synthetic",
        "batch_size": 32,
        "eval_batch_size": 64,
        "val_split": 0.25,
        "params": {"train_size": 256, "test_size": 64, "image_size": 12, "num_classes": 4},
    },
    "model": {"name": "cnn1"},
    "train": {"epochs": 1, "progress": False},
}
RULES = ["mean", "weighted_acc", "weighted_nll", "plurality", "majority", "stacking"]


def config(**top):
    combine = {"rules": RULES, "stacking": {"folds": 3, "epochs": 50}, "tta": "flip"}
    members = [{"name": "a", "seeds": [0, 1]}]
    tree = {"name": "tiny", "base": copy.deepcopy(BASE), "members": members, "combine": combine}
    tree.update(top)
    return tree


def test_cli_end_to_end_writes_results_and_reuses_members(tmp_path, capsys):
    path = tmp_path / "ens.yaml"
    path.write_text(yaml.safe_dump(config()))
    out = tmp_path / "out"
    assert main(["ensemble", "--config", str(path), "--out", str(out), "--json"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert [m["name"] for m in results["members"]] == ["a-s0", "a-s1"]
    assert len(results["rows"]) == len(RULES) * 2  # one group, without and with TTA
    rows = {(r["rule"], r["tta"]): r for r in results["rows"]}
    assert rows[("mean", False)]["members"] == ["a-s0", "a-s1"]
    for r in results["rows"]:
        assert 0.0 <= r["test_acc"] <= 1.0 and r["train_seconds"] > 0 and r["infer_seconds"] > 0
    assert sum(rows[("weighted_nll", False)]["weights"]) == pytest.approx(1.0, abs=1e-5)
    assert 0.0 <= rows[("stacking", False)]["oof_acc"] <= 1.0
    assert results["num_val"] == 64 and results["num_test"] == 64
    assert (out / "members" / "a-s0" / "metrics.json").is_file()
    md = (out / "results.md").read_text()
    assert "| a-s1 |" in md and "| all | majority |" in md
    # flip TTA for members that never trained with flips: said in the log and the results
    assert len(results["warnings"]) == 2 and "'a-s0' trained without hflip" in md
    captured = capsys.readouterr()
    assert "warning: member 'a-s1' trained without hflip" in captured.err
    last = json.loads(captured.out.strip().splitlines()[-1])
    assert len(last["rows"]) == len(RULES) * 2
    # the Ensemble module through evaluate() agrees with the cached-output combination
    ens = Ensemble.from_runs([out / "members" / "a-s0", out / "members" / "a-s1"])
    data = build_eval_data(build_plan(config()).members[0].config)
    res = evaluate(ens, data.test, num_classes=4)
    assert res.accuracy == pytest.approx(rows[("mean", False)]["test_acc"])
    assert res.loss == pytest.approx(rows[("mean", False)]["test_nll"], abs=1e-5)
    # a second run reuses the finished members
    assert main(["ensemble", "--config", str(path), "--out", str(out)]) == 0
    assert "already finished, reusing" in capsys.readouterr().err
    # existing runs as members (`run:`), combined without training
    runs = [{"name": f"old{s}", "run": str(out / "members" / f"a-s{s}")} for s in (0, 1)]
    tree = config(members=runs, combine={"rules": ["mean"]})
    again = run_ensemble(build_plan(tree), tmp_path / "out2", log=lambda m: None)
    assert again["rows"][0]["test_acc"] == rows[("mean", False)]["test_acc"]
    assert not (tmp_path / "out2" / "members").exists()


def test_snapshot_members_and_groups(tmp_path):
    snap = {"name": "snap", "snapshots": {"last": 2},
            "schedule": {"name": "cosine_restarts", "params": {"cycles": 3}},
            "train": {"epochs": 3, "progress": False}}  # fmt: skip
    epochs = {"name": "ep", "snapshots": {"last": 2, "per_epoch": True},
              "train": {"epochs": 2, "progress": False}}  # fmt: skip
    groups = {"snaps": ["snap"], "mixed": ["a", "snap"], "epochs": ["ep"]}
    tree = config(members=[{"name": "a"}, snap, epochs], groups=groups)
    tree["combine"] = {"rules": ["mean", "plurality"]}
    results = run_ensemble(build_plan(tree), tmp_path, log=lambda m: None)
    names = [m["name"] for m in results["members"]]
    assert names == ["a", "snap/snapshot_2", "snap/snapshot_3", "ep/snapshot_1", "ep/snapshot_2"]
    rows = {(r["group"], r["rule"]): r for r in results["rows"]}
    assert rows[("snaps", "mean")]["members"] == ["snap/snapshot_2", "snap/snapshot_3"]
    assert len(rows[("mixed", "mean")]["members"]) == 3
    snap_s = next(m for m in results["members"] if m["name"] == "snap/snapshot_3")["train_seconds"]
    assert rows[("snaps", "mean")]["train_seconds"] == pytest.approx(snap_s)  # one run's cost


@pytest.mark.parametrize(
    "change,message",
    [
        ({"colour": 1}, "unknown key 'colour'"),
        ({"members": []}, "non-empty list"),
        ({"members": [{"name": "a"}, {"name": "a"}]}, "duplicate member name 'a'"),
        ({"members": [{"name": "a b"}]}, "letters, digits"),
        ({"members": [{"name": "a", "optim": {"lr": -1}}]}, "members\\[0\\] \\(a\\).*optim.lr"),
        ({"members": [{"name": "a", "snapshots": 2}]}, "cosine_restarts"),
        (
            {"members": [{"name": "a", "snapshots": {"last": 2, "per_epoch": True}}]},
            "last=2 exceeds train.epochs=1",
        ),
        (
            {"members": [{"name": "a"}, {"name": "b", "data": {"val_split": 0.5}}]},
            "data.val_split is 0.5 but 'a' has 0.25",
        ),
        ({"groups": {"g": ["zz"]}}, "unknown member 'zz'"),
        ({"combine": {"rules": ["median"]}}, "combine.rules"),
        ({"combine": {"tta": {"views": ["spin"]}}}, "unknown TTA view"),
        ({"combine": {"stacking": {"meta": "svm"}}}, "stacking meta"),
    ],
)
def test_bad_configs_fail_before_training(change, message):
    with pytest.raises(ConfigError, match=message):
        build_plan(config(**change))


def test_weights_and_stacking_need_a_validation_split():
    tree = config()
    tree["base"]["data"]["val_split"] = 0.0
    with pytest.raises(ConfigError, match="weighted_acc, weighted_nll, stacking need"):
        build_plan(tree)
    tree["combine"]["rules"] = ["mean", "majority"]
    assert build_plan(tree).has_val is False


def test_cli_reports_config_errors_cleanly(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config(members=[{"name": "a", "snapshots": 2}])))
    assert main(["ensemble", "--config", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "cnnlab: error:" in err and "bad.yaml" in err and "cosine_restarts" in err
    assert torch.is_tensor(torch.zeros(1))
