"""Tiny real run directories (trained once per session) and a compare directory built from them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cnnlab.config import build_config
from cnnlab.reports.environment import environment_info
from cnnlab.training.spine import run_training


def _train(root: Path, name: str, model: str, **params) -> Path:
    cfg = build_config(
        {
            "data": {
                "dataset": "synthetic",
                "batch_size": 32,
                "eval_batch_size": 64,
                "params": {"train_size": 128, "test_size": 48, "image_size": 12,
                           "num_classes": 4, **params},
            },
            "model": {"name": model},
            "train": {"epochs": 2, "progress": False},
        }
    )  # fmt: skip
    run_training(cfg, root / name, log=lambda m: None)
    return root / name


@pytest.fixture(scope="session")
def trained_runs(tmp_path_factory) -> dict[str, Path]:
    """Three finished runs: a grey CNN, a softmax regression and an RGB CNN (about 2 s)."""
    root = tmp_path_factory.mktemp("trained")
    return {
        "cnn": _train(root, "cnn1", "cnn1"),
        "softmax": _train(root, "softmax", "softmax"),
        "rgb": _train(root, "rgb", "cnn1", in_chans=3),
    }


@pytest.fixture
def run_dir(trained_runs, tmp_path) -> Path:
    """A private copy of the CNN run (tests may damage it)."""
    return Path(shutil.copytree(trained_runs["cnn"], tmp_path / "run"))


@pytest.fixture
def softmax_dir(trained_runs, tmp_path) -> Path:
    return Path(shutil.copytree(trained_runs["softmax"], tmp_path / "softmax"))


def _row(run: Path, model: str, rels: list[str], seeds: list[int], std) -> dict:
    m = json.loads((run / "metrics.json").read_text())
    return {
        "model": model, "recipe": f"tiny/{model}", "seeds": seeds,
        "test_acc": m["test_acc"], "test_acc_std": std, "test_loss": m["test_loss"],
        "params": m["params"], "macs": m["macs"], "train_seconds": m["train_seconds"],
        "seconds_per_epoch": m["seconds_per_epoch"],
        "infer_images_per_s": m["infer_images_per_s"], "epochs": m["epochs"], "runs": rels,
    }  # fmt: skip


def make_compare(trained_runs: dict[str, Path], out: Path) -> Path:
    """A compare directory in the ``cnnlab compare`` layout: softmax (1 seed), cnn1 (2 seeds)."""
    layout = {
        "runs/softmax/seed0": trained_runs["softmax"],
        "runs/cnn1/seed0": trained_runs["cnn"],
        "runs/cnn1/seed1": trained_runs["cnn"],
    }
    for rel, src in layout.items():
        shutil.copytree(src, out / rel)
    results = {
        "preset": "tiny",
        "command": "cnnlab compare --preset tiny --seeds 2",
        "dataset": "synthetic",
        "data_source": "synthetic (seed=0)",
        "env": environment_info(),
        "wall_seconds": 12.5,
        "started": "2025-01-01T12:00:00",
        "rows": [
            _row(trained_runs["softmax"], "softmax", ["runs/softmax/seed0"], [0], None),
            _row(
                trained_runs["cnn"], "cnn1", ["runs/cnn1/seed0", "runs/cnn1/seed1"], [0, 1], 0.0125
            ),
        ],
        "notes": ["softmax: the case study reports about 85% & more <b>than</b> that."],
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))
    return out


@pytest.fixture
def compare_dir(trained_runs, tmp_path) -> Path:
    return make_compare(trained_runs, tmp_path / "compare")
