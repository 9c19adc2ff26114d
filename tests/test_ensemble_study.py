"""benchmarks/ensembles/run_study.py --smoke: members trained in parallel worker processes
(``--jobs 2``) with the study's augmentation are then reused by the combination step."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "ensembles" / "run_study.py"


@pytest.mark.slow
def test_parallel_members_are_trained_augmented_and_reused(tmp_path):
    out = tmp_path / "study"
    cmd = [sys.executable, str(SCRIPT), "--smoke", "--jobs", "2", "--out", str(out),
           "--budget-epochs", "6", "--cycles", "3", "--keep", "2"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    members = ["single", "seed-s0", "seed-s1", "seed-s2", "snap"]
    assert "training 5 members, 2 at a time" in done.stderr
    for name in members:
        assert f"member {name} trained" in done.stderr
        # the combination step found each member finished: nothing was trained twice
        assert f"{name}: already finished, reusing" in done.stderr
        cfg = yaml.safe_load((out / "members" / name / "config.yaml").read_text())
        assert cfg["data"]["augment"] == [{"name": "random_crop", "padding": 2}, "hflip"]
    assert len(list((out / "members" / "snap").glob("snapshot_*.safetensors"))) == 3
    study = (out / "study.md").read_text()
    assert "training augmentation: crop_flip" in study and "Verdict:" in study
