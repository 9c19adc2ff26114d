"""Shared fixtures: tiny synthetic runs, the shared Fashion-MNIST copy when present."""

from __future__ import annotations

import copy
import importlib.util
import os
from pathlib import Path

import pytest
import torch

from cnnlab.config import build_config

SHARED_FMNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "fashion-mnist"

# One intra-op thread: the tests' tensors are tiny, and on a busy 2-core machine two OpenMP
# threads wait on each other (measured 4x slower model tests with 2 threads under load).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Never read or write the real per-user cache or CNNLAB_DATA from tests."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("CNNLAB_DATA", raising=False)


@pytest.fixture(scope="session")
def load_benchmark():
    """``load_benchmark("ensembles/run_study.py")``: a script under benchmarks/ as a module."""
    root = Path(__file__).resolve().parents[1] / "benchmarks"

    def load(relpath: str):
        path = root / relpath
        spec = importlib.util.spec_from_file_location(f"{path.parent.name}_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture
def fmnist_dir() -> Path:
    path = Path(os.environ.get("CNNLAB_TEST_FMNIST", SHARED_FMNIST))
    if not (path / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"full Fashion-MNIST not found at {path}")
    return path


TINY = {
    "data": {
        "dataset": "synthetic",
        "batch_size": 32,
        "eval_batch_size": 64,
        "params": {"train_size": 256, "test_size": 64, "image_size": 12, "num_classes": 4},
    },
    "model": {"name": "cnn1"},
    "train": {"epochs": 2, "progress": False},
}


def tiny_config(**sections):
    """A config that trains in well under a second on synthetic 12x12 images."""
    tree = copy.deepcopy(TINY)
    for key, value in sections.items():
        if isinstance(value, dict):
            tree.setdefault(key, {}).update(value)
        else:
            tree[key] = value
    return build_config(tree)


@pytest.fixture
def tiny_cfg():
    return tiny_config
