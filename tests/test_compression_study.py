"""benchmarks/compression/run_study.py in --smoke mode: a finished study is reused, not redone."""

from __future__ import annotations

import json

import pytest


@pytest.mark.slow
def test_finished_studies_are_reused_and_a_changed_one_is_refused(tmp_path, load_benchmark,
                                                                  capsys):  # fmt: skip
    study = load_benchmark("compression/run_study.py")
    args = ["--smoke", "--no-timing", "--threads", "1", "--out", str(tmp_path)]
    assert study.main([*args, "--only", "vgg-int8"]) == 0
    first = json.loads((tmp_path / "study.json").read_text())["results"]
    assert [r["study"] for r in first] == ["vgg-int8"]
    assert [row["step"] for row in first[0]["rows"]] == ["original", "int8(calibration_batches=10)"]
    capsys.readouterr()

    assert study.main([*args, "--only", "vgg-int8", "vgg-lowrank"]) == 0
    assert "vgg-int8: finished before, reusing" in capsys.readouterr().err
    again = json.loads((tmp_path / "study.json").read_text())["results"]
    assert [r["study"] for r in again] == ["vgg-int8", "vgg-lowrank"]
    assert again[0]["rows"] == first[0]["rows"]  # read back, not recomputed

    published = tmp_path / "published"
    # every study known, only two finished; their reports and configs published
    assert study.main([*args, "--summarize", "--publish", str(published)]) == 0
    summary = json.loads((tmp_path / "study.json").read_text())["results"]
    assert [r["study"] for r in summary] == ["vgg-int8", "vgg-lowrank"]
    assert "Not run yet: vgg-prune-kmeans, vgg-filters-l1" in (tmp_path / "study.md").read_text()
    files = [f"{s}/{f}" for s in ("vgg-int8", "vgg-lowrank")
             for f in ("config.yaml", "report.json", "report.md")]  # fmt: skip
    got = sorted(p.relative_to(published).as_posix() for p in published.rglob("*.*"))
    assert got == ["study.json", "study.md", *files]
    assert (published / "study.md").read_text() == (tmp_path / "study.md").read_text()

    # --retime times the finished studies' saved models again and runs nothing else
    capsys.readouterr()
    assert study.main([*args, "--retime", "--only", "vgg-int8", "vgg-filters-l1"]) == 0
    err = capsys.readouterr().err
    assert "vgg-int8: timing its saved models again" in err
    assert "vgg-filters-l1: not run yet (--retime)" in err
    retimed = json.loads((tmp_path / "vgg-int8" / "study.json").read_text())
    assert retimed["rows"][1]["throughput_b256"] > 0 and retimed["retimed"]
    assert [r["test_acc"] for r in retimed["rows"]] == [r["test_acc"] for r in first[0]["rows"]]
    assert not (tmp_path / "vgg-filters-l1").exists()

    with pytest.raises(SystemExit, match="another config or run"):
        study.main(["--smoke", "--threads", "1", "--out", str(tmp_path), "--only", "vgg-int8"])


def test_only_keeps_the_given_order_and_refuses_unknown_names(load_benchmark):
    study = load_benchmark("compression/run_study.py")
    every = study.studies(smoke=True)
    picked = study.selected(every, ["resnet-distill", "vgg-int8", "resnet-distill"])
    assert [s["name"] for s in picked] == ["resnet-distill", "vgg-int8"]
    assert study.selected(every, None) == every
    with pytest.raises(SystemExit, match="unknown study vgg-int4"):
        study.selected(every, ["vgg-int8", "vgg-int4"])
