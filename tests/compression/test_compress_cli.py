"""``cnnlab compress`` end to end on a tiny run, and ``cnnlab list compression``."""

from __future__ import annotations

import json

import pytest

from cnnlab.cli.main import main
from cnnlab.compression import COMPRESSION
from cnnlab.compression.storage import load_compressed

TINY = [
    "--dataset", "synthetic", "--model", "cnn1", "--epochs", "1", "--no-progress",
    "--set", "data.params.train_size=96", "--set", "data.params.test_size=32",
    "--set", "data.params.image_size=10", "--set", "data.params.num_classes=3",
    "--set", "data.batch_size=32", "--set", "model.params.norm=bn",
]  # fmt: skip

CONFIG = """
finetune: {lr_scale: 0.5}
steps:
  - {name: prune_magnitude, sparsity: 0.6, iterations: 2, finetune_epochs: 1}
  - {name: finetune, epochs: 1}
  - {name: kmeans, bits: 3}
  - {name: int8, calibration_batches: 1}
"""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", *TINY, "--out", str(run)]) == 0
    return run


def test_compress_end_to_end(run_dir, tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG)
    out = tmp_path / "out"
    argv = ["compress", str(run_dir), "--config", str(cfg), "--out", str(out), "--no-timing"]
    assert main([*argv, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    report = json.loads((out / "report.json").read_text())
    rows = report["rows"]
    assert [r["file"] for r in rows] == [r["file"] for r in printed["rows"]] == [
        "00-original.safetensors", "01-prune_magnitude.safetensors", "02-finetune.safetensors",
        "03-kmeans.safetensors", "04-int8.safetensors"]  # fmt: skip
    for row in rows:
        assert row["bytes"] == (out / row["file"]).stat().st_size
        assert row["reload_acc"] == row["test_acc"] and row["reload_max_abs_diff"] == 0
    assert rows[1]["nonzero"] < 0.5 * rows[1]["params"]
    assert rows[3]["bytes"] < rows[1]["bytes"] < rows[0]["bytes"]  # sparse, then shared
    assert rows[0]["delta_acc"] is None and rows[2]["delta_acc"] is not None
    md = (out / "report.md").read_text()
    assert "| step |" in md and "kmeans(bits=3)" in md
    _model, meta = load_compressed(out / "03-kmeans.safetensors")
    assert meta["model"]["name"] == "cnn1" and meta["steps"][-1]["name"] == "kmeans"
    assert main(argv) == 2  # an existing report is never overwritten
    assert "already holds a compression report" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("steps: [{name: prune}]", "unknown compression 'prune'"),
        ("steps: [{name: int8}, {name: finetune}]", "int8 must be the last step"),
        ("steps: []", "'steps' must be a non-empty list"),
        ("stepz: []", "unknown key(s) stepz"),
        ("steps: [{name: kmeans, bits: 9}]", "bits must be an integer from 1 to 8"),
        ("finetune: {lrr: 1}\nsteps: [{name: finetune}]", "finetune: unknown key(s) lrr"),
    ],
)
def test_bad_configs_are_one_clear_line(config, message, run_dir, tmp_path, capsys):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(config)
    assert main(["compress", str(run_dir), "--config", str(cfg), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cnnlab: error:") and message in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_list_compression_names_every_method(capsys):
    assert main(["list", "compression"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == COMPRESSION.names()
    assert all(len(line.split(None, 1)) == 2 for line in lines)  # each has a description


def test_example_configs_are_valid():
    from pathlib import Path

    from cnnlab.compression.compress_run import read_config

    folder = Path(__file__).resolve().parents[2] / "src" / "cnnlab" / "configs" / "compress"
    files = sorted(folder.glob("*.yaml"))
    assert len(files) >= 6
    for path in files:
        assert read_config(path)["steps"], path.name


def test_distillation_from_a_teacher_run(run_dir, tmp_path):
    pytest.importorskip("cnnlab.ensembles.ensemble")
    from cnnlab.compression.compress_run import run_compression

    config = {
        "steps": [{"name": "distill", "student": {"name": "softmax"}, "teacher": [str(run_dir)],
                   "epochs": 1, "temperature": 2.0}],
    }  # fmt: skip
    report = run_compression(run_dir, config, out=tmp_path / "d", log=lambda _m: None,
                             timing=False)  # fmt: skip
    student = report["rows"][1]
    assert student["details"]["student"]["name"] == "softmax"
    assert student["params"] < report["rows"][0]["params"]
    assert student["reload_acc"] == student["test_acc"]


def test_an_interrupted_compression_continues_where_it_stopped(run_dir, tmp_path):
    """Same command, same --out: finished trainings are loaded, the interrupted one continues
    from its last epoch, and the report equals an uninterrupted run's."""
    from cnnlab.compression.compress_run import RESUME_DIR, run_compression

    config = {"steps": [
        {"name": "prune_magnitude", "sparsity": 0.5, "iterations": 2, "finetune_epochs": 1},
        {"name": "distill", "student": {"name": "softmax"}, "epochs": 2}]}  # fmt: skip
    straight = run_compression(run_dir, config, out=tmp_path / "a", log=lambda _m: None,
                               timing=False)  # fmt: skip

    class Killed(Exception):
        pass

    def killed_after_first_student_epoch(line: str) -> None:
        if "train epoch 1/2" in line:
            raise Killed

    out = tmp_path / "b"
    with pytest.raises(Killed):
        run_compression(run_dir, config, out=out, log=killed_after_first_student_epoch,
                        timing=False)  # fmt: skip
    assert sorted(p.name for p in (out / RESUME_DIR).iterdir()) == [
        "step01-1.safetensors", "step01-2.safetensors", "step02-1.safetensors"]  # fmt: skip
    lines: list[str] = []
    resumed = run_compression(run_dir, config, out=out, log=lines.append, timing=False)
    assert not any("finetune epoch" in line for line in lines)  # pruning's were loaded
    assert any("continuing from" in line and "after epoch 1/2" in line for line in lines)
    assert [line.split(":")[0].strip() for line in lines if "train epoch" in line] == [
        "train epoch 2/2"]  # fmt: skip
    assert [r["test_acc"] for r in resumed["rows"]] == [r["test_acc"] for r in straight["rows"]]
    assert not (out / RESUME_DIR).exists()  # removed once the report is written


def test_a_resume_file_of_another_config_is_refused_by_name(run_dir, tmp_path, capsys):
    out, cfg = tmp_path / "out", tmp_path / "c.yaml"
    cfg.write_text("steps: [{name: finetune, epochs: 2}]")
    argv = ["compress", str(run_dir), "--config", str(cfg), "--out", str(out), "--no-timing"]
    from cnnlab.compression.compress_run import RESUME_DIR, run_compression

    def killed(line: str) -> None:
        if "epoch 1/2" in line:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_compression(run_dir, cfg, out=out, log=killed, timing=False)
    cfg.write_text("steps: [{name: finetune, epochs: 3}]")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{RESUME_DIR}/step01-1.safetensors: saved by a different training" in err
    assert "delete the file" in err and not (out / "report.json").exists()


def test_retime_times_the_saved_models_and_keeps_every_other_figure(run_dir, tmp_path):
    from cnnlab.compression.compress_run import retime_compression
    from cnnlab.compression.state import CompressionError

    cfg = tmp_path / "c.yaml"
    cfg.write_text("measure: {repeats: 1, batch_sizes: [1, 4]}\n"
                   "steps: [{name: prune_magnitude, sparsity: 0.5}, {name: int8}]\n")  # fmt: skip
    out = tmp_path / "out"
    assert main(["compress", str(run_dir), "--config", str(cfg), "--out", str(out),
                 "--no-timing"]) == 0  # fmt: skip
    before = json.loads((out / "report.json").read_text())
    assert all("latency_b1_ms" not in r for r in before["rows"])  # never timed
    logged = []
    after = retime_compression(out, log=logged.append)
    assert json.loads((out / "report.json").read_text()) == json.loads(json.dumps(after))
    assert logged == ["timing 3 models, 1 interleaved repetitions"]
    for old, new in zip(before["rows"], after["rows"], strict=True):
        assert new["latency_b1_ms"] > 0 and set(new["seconds_per_batch"]) == {"1", "4"}
        keep = ("file", "params", "nonzero", "bytes", "macs", "test_acc", "reload_acc")
        assert {k: new[k] for k in keep} == {k: old[k] for k in keep}
    assert after["rows"][0]["speedup_b256"] is None  # no batch 256 in this config
    assert "re-timed" in (out / "report.md").read_text()
    with pytest.raises(CompressionError, match="no report.json"):
        retime_compression(tmp_path)
