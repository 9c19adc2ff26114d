"""benchmarks/time_to_accuracy: the schedule, the verdicts and tables, and a --quick run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = {"cpu": "CPU", "cpu_count": 2, "cpu_capability": "AVX512", "load_average_1min": 0.1,
       "python": "3.11", "torch": "2.13.0", "cnnlab": "0.1.0"}  # fmt: skip


@pytest.fixture
def bench(load_benchmark):
    sys.path.insert(0, str(ROOT / "benchmarks" / "time_to_accuracy"))
    try:
        yield load_benchmark("time_to_accuracy/run.py")
    finally:
        sys.path.remove(str(ROOT / "benchmarks" / "time_to_accuracy"))


def _run(seed: int, acc: float, seconds: float, tta: float | None = None) -> dict:
    return {"seed": seed, "test_acc": acc, "tta_acc": tta, "train_seconds": seconds, "epochs": 2,
            "images_seen": 120_000, "macs_per_image": 1_000_000, "train_flops": 3.6e11,
            "params": 1000, "precision": "bf16", "eval_seconds": 1.0}  # fmt: skip


def test_every_preset_target_and_ablation_is_planned_and_interleaved(bench) -> None:
    plan = bench.load_plan()
    assert set(plan["targets"]) == set(plan["preset"].models)
    assert plan["ablation_base"] in plan["targets"]
    rounds = bench.schedule(plan, list(plan["targets"]), list(plan["ablations"]), 1)
    assert len(rounds) == max(t["seeds"] for t in plan["targets"].values())
    assert all(r[0] == ("plain",) or r[-1] == ("plain",) for r in rounds)  # ABBA order
    assert rounds[0][0] == ("plain",) and rounds[1][-1] == ("plain",)
    runs = [job for r in rounds for job in r if job[0] == "target"]
    for name, spec in plan["targets"].items():  # each target gets exactly its seeds
        assert sorted(j[2] for j in runs if j[1] == name) == list(range(spec["seeds"]))


def test_units_medians_verdicts_and_tables(bench, tmp_path: Path, monkeypatch) -> None:
    report = sys.modules["tta_report"]  # imported by run.py
    monkeypatch.setattr("cnnlab.reports.environment.environment_info", lambda: ENV)
    plan = {
        "targets": {
            "a": {"label": "93%", "accuracy": 0.93, "max_units": 0.8, "seeds": 3, "tta": "flip"},
            "b": {
                "label": "best",
                "accuracy": 0.956,
                "max_units": 80,
                "seeds": 2,
                "tta": "none",
                "tried": "wider nets",
            },
        },
        "ablations": {
            "no_tta": {"label": "flip TTA", "tta": "none"},
            "bn": {"label": "BN momentum 0.6", "set": ["x=1"], "added": True},
        },
        "ablation_base": "a",
    }
    results = {
        "plain": [{"seconds": 20.0, "test_acc": 0.9}, {"seconds": 30.0, "test_acc": 0.9},
                  {"seconds": 25.0, "test_acc": 0.9}],
        "targets": {"a": [_run(0, 0.929, 15, 0.931), _run(1, 0.928, 19, 0.932),
                          _run(2, 0.930, 30, 0.929)],
                    "b": [_run(0, 0.95, 100), _run(1, 0.952, 120)]},
        "ablations": {"no_tta": [_run(0, 0.929, 16)],
                      "bn": [_run(0, 0.93, 20, 0.932), _run(1, 0.93, 20, 0.933)]},
    }  # fmt: skip
    (tmp_path / "README.md").write_text(f"intro\n{report.BEGIN}\nold\n{report.END}\nrest\n")
    data = report.write_reports(tmp_path, plan, results, command="run.py", started="today",
                                quick=False)  # fmt: skip
    a, b = data["targets"]["a"]["summary"], data["targets"]["b"]["summary"]
    assert data["unit_seconds"] == 25.0
    assert a["median_acc"] == 0.931 and a["median_units"] == pytest.approx(19 / 25)
    assert a["verdict"] == "met"  # TTA accuracy 93.1% >= 93% in 0.76 <= 0.8 units
    assert b["median_acc"] == pytest.approx(0.951)
    assert b["verdict"] == "missed: 0.50 points short; tried: wider nets"
    abl = data["ablations"]["no_tta"]["summary"]
    assert abl["median_acc"] == 0.929  # single view, as the ablation says
    md = (tmp_path / "results.md").read_text()
    assert "## Ablations: one technique removed from `a`" in md
    assert "| flip TTA |  | 1 | 92.90% | -0.20 | 0.64 | -0.12 |" in md
    assert "| no_tta | 0 | 92.90% |  | 16.0 | 0.64 |" in md  # its run, with the targets'
    # an entry marked ``added`` goes to a table of its own, its change listed
    assert "| added | change | seeds |" in md and "| BN momentum 0.6 | `x=1` | 2 | 93.25% |" in md
    readme = (tmp_path / "README.md").read_text()
    assert readme.startswith("intro\n") and readme.endswith(f"{report.END}\nrest\n")
    assert "old" not in readme and "| 93% | `configs/fast/a.yaml` | 93.10% |" in readme
    assert json.loads((tmp_path / "results.json").read_text())["unit_seconds"] == 25.0


@pytest.mark.slow
def test_quick_mode_runs_end_to_end_on_the_sample(tmp_path: Path) -> None:
    script = ROOT / "benchmarks" / "time_to_accuracy" / "run.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--quick", "--targets", "fast93", "--ablations", "none",
         "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["quick"] and len(data["plain"]) == 1
    run = data["targets"]["fast93"]["runs"][0]
    assert run["tta_acc"] is not None and run["images_seen"] == 6000 and run["epochs"] == 1
    # (the ablation table is covered by the report test above; one training less keeps CI short)
    assert "Smoke test" in (tmp_path / "results.md").read_text()


def test_a_stopped_study_resumes_without_redoing_its_jobs(bench, tmp_path: Path, monkeypatch):
    calls, stop = [], [True]

    def fake_job(job, plan, results, *rest) -> None:
        calls.append(job)
        if stop[0] and len(calls) == 3:
            raise KeyboardInterrupt  # the study is stopped during its third job
        if job[0] == "plain":
            results["plain"].append({"seconds": 1.0, "test_acc": 0.9})
        else:
            results["targets"][job[1]].append(_run(job[2], 0.95, 1.0, 0.95))

    written: dict = {}
    monkeypatch.setattr(bench, "run_job", fake_job)
    monkeypatch.setattr(bench, "train_set_size", lambda data_dir: 100)
    monkeypatch.setattr(
        bench, "write_reports", lambda out, plan, results, **kw: written.update(results)
    )
    argv = ["run.py", "--data-dir", str(tmp_path), "--targets", "fast93", "--ablations", "none",
            "--out", str(tmp_path)]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(KeyboardInterrupt):
        bench.main()
    partial = tmp_path / "results.partial.json"
    assert json.loads(partial.read_text())["done"] == ["0:plain", "0:target:fast93:0"]
    stop[0], calls[:] = False, []
    monkeypatch.setattr(sys, "argv", [*argv, "--resume"])
    bench.main()
    assert len(calls) == 4  # 3 rounds of (plain, seed): the 2 done jobs are not run again
    assert len(written["plain"]) == 3 and [r["seed"] for r in written["targets"]["fast93"]] == [
        0,
        1,
        2,
    ]
    assert not partial.exists()


def test_part_of_the_study_may_not_overwrite_the_whole_one(bench, monkeypatch, capsys) -> None:
    """--targets into the home directory would leave results.md and the README with one row."""
    argv = ["run.py", "--data-dir", "/nowhere", "--targets", "fastbest"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as stop:
        bench.main()
    assert stop.value.code == 2
    assert "pass --out" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--ablation-base", "fast95"], "pass --out"),  # another base is a different study too
        (["--ablation-base", "fast96", "--out", "/tmp/x"], "unknown target 'fast96'"),
    ],
)
def test_the_ablation_base_is_checked(bench, monkeypatch, capsys, extra, message) -> None:
    monkeypatch.setattr(sys, "argv", ["run.py", "--data-dir", "/nowhere", *extra])
    with pytest.raises(SystemExit) as stop:
        bench.main()
    assert stop.value.code == 2
    assert message in capsys.readouterr().err


def test_ablations_alone_are_scheduled_and_reported_without_a_targets_table(
    bench, tmp_path: Path, monkeypatch
) -> None:
    """``--targets none``: the plain loop and the ablations only (their base's own runs come
    from an earlier study); the report has no empty targets table, but still its unit."""
    jobs: list = []

    def fake_job(job, plan, results, *rest) -> None:
        jobs.append(job)
        if job[0] == "plain":
            results["plain"].append({"seconds": 10.0, "test_acc": 0.9})
        else:
            results["ablations"][job[1]].append(_run(job[2], 0.95, 20.0, 0.951))

    monkeypatch.setattr(bench, "run_job", fake_job)
    monkeypatch.setattr(bench, "train_set_size", lambda data_dir: 100)
    monkeypatch.setattr("cnnlab.reports.environment.environment_info", lambda: ENV)
    argv = ["run.py", "--data-dir", str(tmp_path), "--targets", "none", "--ablation-base",
            "fast95", "--ablations", "bn_frozen_scale", "--ablation-seeds", "2", "--out",
            str(tmp_path)]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    bench.main()
    assert jobs == [("plain",), ("ablation", "bn_frozen_scale", 0),
                    ("ablation", "bn_frozen_scale", 1), ("plain",)]  # fmt: skip
    md = (tmp_path / "results.md").read_text()
    assert "| target | recipe |" not in md
    assert "Unit: one plain-loop epoch = 10.0 s (median of 2)" in md
    assert "## Additions: one technique added to `fast95`" in md
    assert "| frozen BN scale (gamma = 1, only the shift learns) |" in md
