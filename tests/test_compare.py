"""cnnlab compare: planning, seeds, results files, reuse of finished runs, claim notes."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cnnlab.cli.main import main
from cnnlab.compare import plan_compare, run_compare
from cnnlab.config import ConfigError
from cnnlab.reports.results import notes_against_claims

SYNTH = [
    "data.dataset=synthetic",
    "data.params.train_size=128",
    "data.params.test_size=40",
    "data.params.image_size=12",
    "data.batch_size=32",
    "train.progress=false",
]


def test_plan_uses_each_recipe_and_validates_everything_first():
    preset, plan = plan_compare("case-study", overrides=SYNTH, epochs=1)
    assert [p.model for p in plan] == list(preset.models)
    assert all(p.config.train.epochs == 1 for p in plan)
    alexnet = next(p for p in plan if p.model == "alexnet")
    assert alexnet.config.model.params["dropout"] == 0.5
    assert alexnet.recipe == "case-study/alexnet"
    with pytest.raises(ConfigError, match="unknown preset 'nope'"):
        plan_compare("nope")
    with pytest.raises(ConfigError, match="unknown model 'cnn3'"):
        plan_compare("case-study", models=["cnn1", "cnn3"])
    with pytest.raises(ConfigError, match="optim.lr"):
        plan_compare("case-study", overrides=["optim.lr=-1"])


def test_run_compare_writes_results_and_reuses_finished_runs(tmp_path):
    preset, plan = plan_compare("case-study", models=["softmax", "cnn1"], overrides=SYNTH,
                                epochs=1)  # fmt: skip
    logs: list[str] = []
    results = run_compare(preset, plan, tmp_path, seeds=2, log=logs.append)
    rows = {r["model"]: r for r in results["rows"]}
    assert set(rows) == {"softmax", "cnn1"}
    for row in rows.values():
        accs = row["test_acc_per_seed"]
        assert row["seeds"] == [0, 1] and len(accs) == 2
        assert row["test_acc"] == pytest.approx(sum(accs) / 2)
        assert row["test_acc_std"] == pytest.approx(abs(accs[0] - accs[1]) / 2**0.5)
        for rel in row["runs"]:
            assert (tmp_path / rel / "metrics.json").is_file()
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["preset"] == "case-study" and len(saved["rows"]) == 2
    with open(tmp_path / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["model"] for r in table] == ["softmax", "cnn1"]
    assert "| cnn1 |" in (tmp_path / "results.md").read_text()

    logs.clear()
    again = run_compare(preset, plan, tmp_path, seeds=2, log=logs.append)
    assert sum("already finished" in line for line in logs) == 4
    assert (results["reused_runs"], again["reused_runs"], again["resumed_runs"]) == (0, 4, 0)
    md = (tmp_path / "results.md").read_text()
    assert "reused 4 finished and resumed 0 interrupted run(s)" in md
    assert [r["test_acc"] for r in again["rows"]] == [r["test_acc"] for r in results["rows"]]


def test_changed_config_in_same_out_dir_is_refused(tmp_path):
    preset, plan = plan_compare("case-study", models=["softmax"], overrides=SYNTH, epochs=1)
    run_compare(preset, plan, tmp_path, log=lambda m: None)
    preset, plan2 = plan_compare("case-study", models=["softmax"], overrides=SYNTH, epochs=2)
    from cnnlab.engine.rundir import RunDirError

    with pytest.raises(RunDirError, match="different config"):
        run_compare(preset, plan2, tmp_path, log=lambda m: None)


def test_notes_explain_train_vs_test_gaps():
    claims = {"resnet20": {"test_acc": 0.99, "epochs": 20}, "softmax": {"test_acc": 0.85}}
    rows = [
        {"model": "resnet20", "test_acc": 0.93, "train_acc": 0.995, "epochs": 20},
        {"model": "softmax", "test_acc": 0.846, "train_acc": 0.87, "epochs": 10},
        {"model": "lenet5", "test_acc": 0.9, "train_acc": 0.9, "epochs": 10},
    ]
    notes = notes_against_claims(claims, rows)
    assert len(notes) == 2
    assert "reported accuracy on the training data" in notes[0]
    assert "Consistent with the claim" in notes[1]
    # the running last-epoch accuracy falls short, the final model on the training set does not
    rows = [{"model": "resnet20", "test_acc": 0.93, "train_acc": 0.97, "train_set_acc": 0.991,
             "epochs": 20}]  # fmt: skip
    (note,) = notes_against_claims(claims, rows)
    assert "97.00% running in the last epoch; the final model on the training set: 99.10%" in note
    assert "reported accuracy on the training data" in note
    rows[0]["train_set_acc"] = 0.95
    assert "Neither test nor training accuracy" in notes_against_claims(claims, rows)[0]


def test_train_set_accuracy_is_measured_once_and_matches_eval(tmp_path):
    from cnnlab.trained.evaluation import evaluate_run

    preset, plan = plan_compare("case-study", models=["cnn1"], overrides=SYNTH, epochs=1)
    logs: list[str] = []
    row = run_compare(preset, plan, tmp_path, log=logs.append)["rows"][0]
    run = tmp_path / row["runs"][0]
    expected = evaluate_run(run, log=lambda m: None, split="train")["train_acc"]
    assert row["train_set_acc"] == pytest.approx(expected)
    assert json.loads((run / "train_eval.json").read_text())["num_images"] == 128
    assert row["threads"] == json.loads((run / "env.json").read_text())["torch_threads"] >= 1
    assert "train-set acc" in (tmp_path / "results.md").read_text()
    logs.clear()
    run_compare(preset, plan, tmp_path, log=logs.append)
    assert not any("training set" in line for line in logs)  # cached in the run directory


def test_cli_compare_json_and_report(tmp_path, capsys):
    argv = ["compare", "--models", "softmax", "--epochs", "1", "--out", str(tmp_path), "--json"]
    for item in SYNTH:
        argv += ["--set", item]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["rows"][0]["model"] == "softmax"
    assert (tmp_path / "report.html").is_file()


def test_parallel_jobs_give_the_same_results(tmp_path):
    preset, plan = plan_compare("case-study", models=["softmax", "cnn1"], overrides=SYNTH,
                                epochs=1)  # fmt: skip
    one = run_compare(preset, plan, tmp_path / "one", log=lambda m: None)
    two = run_compare(preset, plan, tmp_path / "two", jobs=2, log=lambda m: None)
    assert [r["test_acc"] for r in one["rows"]] == [r["test_acc"] for r in two["rows"]]
    assert [r["test_loss"] for r in one["rows"]] == pytest.approx(
        [r["test_loss"] for r in two["rows"]], rel=1e-5
    )


def test_worker_lines_name_their_run_once(tmp_path, capsys):
    from cnnlab.compare import _worker

    preset, plan = plan_compare("case-study", models=["softmax"], overrides=SYNTH, epochs=1)
    run_compare(preset, plan, tmp_path, log=lambda m: None)
    prefix = "[1/1] softmax seed 0: "
    _worker(plan[0].config.to_dict(), str(tmp_path / "runs" / "softmax" / "seed0"), prefix)
    err = capsys.readouterr().err
    assert "already finished" in err and err.count(prefix) == 1, err


def test_cli_passes_jobs_through(tmp_path, monkeypatch):
    import cnnlab.compare as compare

    seen = {}

    def fake_run_compare(preset, plan, out, **kw):
        seen.update(kw)
        raise SystemExit(0)

    monkeypatch.setattr(compare, "run_compare", fake_run_compare)
    with pytest.raises(SystemExit):
        main(["compare", "--models", "softmax", "--jobs", "2", "--seeds", "3",
              "--out", str(tmp_path)])  # fmt: skip
    assert seen["jobs"] == 2 and seen["seeds"] == 3


def test_parallel_queue_puts_the_longest_training_first():
    from cnnlab.compare import _estimated_costs
    from cnnlab.compression.measure import model_macs
    from cnnlab.models import create_model

    _, plan = plan_compare("case-study", models=["softmax", "cnn2", "resnet20"], overrides=SYNTH)
    work = [(k, f"runs/{p.model}", p.config, "") for k, p in enumerate(plan)]
    costs = dict(zip([p.model for p in plan], _estimated_costs(work), strict=True))
    # MACs per image x epochs: ResNet-20 (20 epochs) >> cnn2 (10) >> softmax (10)
    assert costs["resnet20"] > costs["cnn2"] > costs["softmax"] > 0
    cnn2 = create_model("cnn2", num_classes=10, in_chans=1, input_size=12)
    assert costs["cnn2"] == model_macs(cnn2, (1, 12, 12)) * 10


def _children(pid: int) -> list[int]:
    path = f"/proc/{pid}/task/{pid}/children"
    try:
        with open(path) as f:
            return [int(c) for c in f.read().split()]
    except FileNotFoundError:
        return []


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="needs Linux /proc")
def test_sigterm_to_compare_stops_its_workers_too(tmp_path):
    """`kill PID` of a `compare --jobs 2` must not leave the worker processes training."""
    argv = [sys.executable, "-m", "cnnlab", "compare", "--models", "cnn1,cnn2", "--jobs", "2",
            "--epochs", "500", "--out", str(tmp_path)]  # fmt: skip
    for item in SYNTH:
        argv += ["--set", item]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300  # spawned workers import torch: slow on a loaded machine
    while len(list(tmp_path.glob("runs/*/seed0/checkpoint.safetensors"))) < 2:  # both training
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.time() < deadline
        time.sleep(0.1)
    workers = [c for c in _children(proc.pid)
               if b"spawn" in Path(f"/proc/{c}/cmdline").read_bytes()]  # fmt: skip
    assert len(workers) == 2
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode != 0
    deadline = time.time() + 30
    while any(_alive(w) for w in workers):
        assert time.time() < deadline, "a worker is still running after the parent was stopped"
        time.sleep(0.1)
    # the interrupted runs are resumable: their checkpoints are intact
    from cnnlab.engine.checkpoint import load_checkpoint

    for run in tmp_path.glob("runs/*/seed0"):
        assert load_checkpoint(run).meta["state"]["step"] > 0
