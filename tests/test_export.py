"""ONNX export checked against onnxruntime; TensorBoard logging (optional extras)."""

from __future__ import annotations

import json

import pytest

from cnnlab.cli.main import main
from cnnlab.training.spine import run_training


def _run(tmp_path, tiny_cfg, **sections):
    run = tmp_path / "run"
    run_training(tiny_cfg(**sections), run, log=lambda m: None)
    return run


def test_onnx_export_matches_torch(tmp_path, tiny_cfg, capsys):
    pytest.importorskip("onnx", reason="ONNX export needs pip install 'cnnlab[export]'")
    pytest.importorskip("onnxruntime", reason="verification needs onnxruntime")
    run = _run(tmp_path, tiny_cfg, model={"name": "cnn2"})
    assert main(["export", str(run), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["verified"] and result["max_abs_diff"] < 1e-4
    assert (run / "model.onnx").stat().st_size > 10_000
    assert not list(run.glob(".*.tmp"))


def test_tensorboard_events_are_written(tmp_path, tiny_cfg):
    pytest.importorskip("tensorboard", reason="needs pip install 'cnnlab[tensorboard]'")
    run = _run(tmp_path, tiny_cfg, train={"tensorboard": True})
    events = list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
