"""CUDA tests (issue 23): every test here, and any test marked ``cuda`` elsewhere, carries the
``cuda`` marker and is skipped, with the reason, where ``torch.cuda.is_available()`` is False.
``pytest -m cuda`` runs only these; ``benchmarks/gpu/run.sh`` runs them on a GPU machine.

They use the synthetic data set of the shared ``tiny_cfg`` fixture, so they need no files and
take seconds; each compares the CUDA result with an independent computation (a CPU run of the
same weights, a uninterrupted run, a formula) where there is one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
NO_GPU = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.cuda)
        if item.get_closest_marker("cuda") is not None and not torch.cuda.is_available():
            item.add_marker(NO_GPU)


@pytest.fixture
def cuda_cfg(tiny_cfg):
    """``tiny_cfg`` on the GPU: ``cuda_cfg(train={...}, model={...})``."""

    def make(**sections):
        train = {"device": "cuda", **sections.pop("train", {})}
        return tiny_cfg(train=train, **sections)

    return make


@pytest.fixture
def exact_cuda(monkeypatch):
    """fp32 arithmetic without TF32 and deterministic cuDNN algorithms, for comparisons with
    the CPU or with another CUDA run to ~1e-5 (TF32 convolutions differ by ~1e-3)."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
