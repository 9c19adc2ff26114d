"""The data-practice study script (benchmarks/data_practice/run_study.py) in --smoke mode.

One smoke run (two imbalance arms, one augmentation arm, the throughput timing; about half a
minute) is shared by the tests; they check the files, the table structure, and recompute the
reported metrics independently from the stored confusion matrices.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "data_practice" / "run_study.py"
ARGS = ["--smoke", "--imbalance-arms", "plain,cost_sensitive", "--augment-arms", "none"]
# Embedded sample: 600 training images per class, long tail 600 * 100^(-k/9), rounded.
LONG_TAIL_COUNTS = [600, 360, 216, 129, 77, 46, 28, 17, 10, 6]


def _mtime(path: Path) -> float | None:
    return path.stat().st_mtime if path.exists() else None


@pytest.fixture(scope="module")
def study(tmp_path_factory, load_benchmark):
    module = load_benchmark("data_practice/run_study.py")
    out = tmp_path_factory.mktemp("data_practice")
    committed = [SCRIPT.parent / "results.json", SCRIPT.parent / "results.md"]
    before = [_mtime(p) for p in committed]
    results = module.main([*ARGS, "--out", str(out)])
    assert [_mtime(p) for p in committed] == before, "--smoke must not touch the repo results"
    return module, out, results


def _section(md: str, number: str) -> str:
    start = md.index(f"## {number}.")
    end = md.find("\n## ", start + 1)
    return md[start : end if end > 0 else len(md)]


def _tables(text: str) -> list[list[list[str]]]:
    """Markdown tables in ``text``: a list of rows (header first, separator dropped)."""
    tables, current = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            if not line.startswith("|---"):
                current.append([cell.strip() for cell in line.strip("|").split("|")])
        elif current:
            tables.append(current)
            current = []
    return tables


def test_files_and_parts(study):
    _, out, results = study
    assert (out / "results.json").is_file() and (out / "results.md").is_file()
    assert set(results["parts"]) == {"imbalance", "augment", "throughput"}
    for part in results["parts"].values():
        assert part["environment"]["torch_threads"] == 1
        assert "--smoke" in part["command"] and part["wall_seconds"] > 0
    md = (out / "results.md").read_text()
    assert md.count("\n## ") == 3 and "Machine: " in md


def test_imbalance_tables(study):
    _, out, results = study
    md = _section((out / "results.md").read_text(), "1")
    summary, recall = _tables(md)
    assert summary[0][:5] == ["arm", "method", "steps", "test acc", "balanced acc"]
    assert [row[0] for row in summary[1:]] == ["plain", "cost_sensitive"]
    assert len(recall[0]) == 11 and recall[0][1] == "T-shirt/top (n=600)"
    assert [row[0] for row in recall[1:]] == ["plain", "cost_sensitive"]
    arms = results["parts"]["imbalance"]["arms"]
    for row in summary[1:]:  # the table shows the recorded numbers
        run = arms[row[0]]["runs"][0]
        assert row[3] == f"{run['acc']:.4f}" and row[4] == f"{run['balanced_acc']:.4f}"
    assert "python -m cnnlab train" in md and "data.imbalance=" in md


def test_long_tailed_training_set(study):
    part = study[2]["parts"]["imbalance"]
    assert part["train_class_counts"] == LONG_TAIL_COUNTS
    for arm in ("plain", "cost_sensitive"):  # 1 epoch over the long-tailed set, batch 100
        assert part["arms"][arm]["runs"][0]["steps"] == math.ceil(sum(LONG_TAIL_COUNTS) / 100)
    assert (
        "loss.params.class_weights=balanced" in part["arms"]["cost_sensitive"]["runs"][0]["command"]
    )


def test_balanced_accuracy_matches_independent_computation(study):
    results = study[2]
    for name in ("imbalance", "augment"):
        for arm in results["parts"][name]["arms"].values():
            for run in arm["runs"]:
                cm = np.array(run["confusion"], dtype=np.float64)
                assert cm.shape == (10, 10) and cm.sum() == 1000  # the balanced test split
                recall = np.diag(cm) / cm.sum(axis=1)
                np.testing.assert_allclose(run["recall"], recall, rtol=0, atol=1e-12)
                assert run["balanced_acc"] == pytest.approx(recall.mean(), abs=1e-12)
                assert run["acc"] == pytest.approx(np.trace(cm) / cm.sum(), abs=1e-12)
                assert run["min_recall"] == pytest.approx(recall.min(), abs=1e-12)
            s = arm["summary"]["acc"]
            assert s["n"] == 1 and s["std"] is None and s["mean"] == arm["runs"][0]["acc"]


def test_augment_table(study):
    _, out, results = study
    (table,) = _tables(_section((out / "results.md").read_text(), "2"))
    assert table[0][:3] == ["arm", "data.augment", "test acc"]
    assert [row[0] for row in table[1:]] == ["none"] and table[1][1] == "`[]`"
    assert table[1][2] == f"{results['parts']['augment']['arms']['none']['runs'][0]['acc']:.4f}"


def test_throughput_ratio(study):
    _, out, results = study
    part = results["parts"]["throughput"]
    recipe = yaml.safe_load((ROOT / "src/cnnlab/configs/best/resnet20.yaml").read_text())
    assert part["pipeline"] == recipe["data"]["augment"]
    assert part["batch_shape"] == [100, 1, 28, 28] and "channels_last" in part["runtime"]
    ratio = part["augment"]["median_ms"] / part["step"]["median_ms"]
    assert part["ratio"] == pytest.approx(ratio) and part["passes"] == (ratio < 0.10)
    md = _section((out / "results.md").read_text(), "3")
    (table,) = _tables(md)
    assert len(table) == 3 and table[0][1] == "median (ms)"
    assert f"{100 * ratio:.1f}% of a step" in md


def test_restart_reuses_runs_and_refuses_other_settings(study):
    module, out, _ = study
    again = module.main([*ARGS, "--out", str(out), "--only", "imbalance"])
    runs = [r for a in again["parts"]["imbalance"]["arms"].values() for r in a["runs"]]
    assert runs and all(r["reused"] for r in runs)
    with pytest.raises(SystemExit, match="another command"):
        module.main([*ARGS, "--out", str(out), "--only", "imbalance", "--model", "cnn2"])


def test_bad_arguments(load_benchmark):
    module = load_benchmark("data_practice/run_study.py")
    with pytest.raises(SystemExit, match="--imbalance-arms: unknown"):
        module.parse_args(["--imbalance-arms", "plain,focal"])
    with pytest.raises(SystemExit, match="--only: unknown"):
        module.parse_args(["--only", "speed"])
    stat = module.stat([0.5, 0.7])
    assert stat["mean"] == pytest.approx(0.6) and stat["std"] == pytest.approx(0.1 * 2**0.5)
