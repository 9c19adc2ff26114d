"""Every command that reads a run back describes the same weights as the run's metrics.json.

An early-stopped run ends with its best epoch's weights (``best.safetensors``), while its
checkpoint holds the last epoch's: ``train --json``, ``eval --json``, the ONNX export under
onnxruntime, ``inspect``'s model, the report's weight figure and ``cnnlab.load`` must all agree
with the reported accuracy to the image (issue: an early-stopped run used to disagree with
itself, 0.796 vs 0.801). A normal run is checked the same way.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cnnlab.cli.main import main
from cnnlab.engine.checkpoint import load_checkpoint
from cnnlab.evaluation.evaluate import evaluate
from cnnlab.inspect.run_figures import load_run as inspect_run
from cnnlab.reports.artifacts import load_run as report_run
from cnnlab.trained.run import load

# The embedded Fashion-MNIST sample, fp32 (ONNX runs in fp32: bf16 could move an image).
BASE = ["--model", "cnn1", "--no-progress", "--set", "data.batch_size=100",
        "--set", "train.precision=fp32"]  # fmt: skip
EARLY = ["--epochs", "12", "--set", "data.val_split=0.1", "--set", "optim.lr=0.01",
         "--set", "train.early_stopping.enabled=true",
         "--set", "train.early_stopping.patience=1"]  # fmt: skip
NORMAL = ["--epochs", "2"]


def _last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module", params=["early", "normal"])
def trained(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(request.param) / "run"
    argv = ["train", *BASE, *(EARLY if request.param == "early" else NORMAL), "--out", str(out)]
    assert main([*argv, "--json"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    return request.param, out, metrics


def test_the_early_stopped_run_reports_other_weights_than_its_checkpoint(trained):
    kind, out, metrics = trained
    if kind == "normal":
        assert metrics["weights"] == "checkpoint.safetensors"
        return
    assert metrics["stopped_early"] and metrics["best_epoch"] < metrics["epochs"]
    assert metrics["weights"] == "best.safetensors"
    last = load_checkpoint(out).model_state()
    run = load(out)
    best = run.fresh_model().state_dict()
    assert any(not torch.equal(last[k], best[k]) for k in best)  # the premise of the test
    assert run.weights == out / "best.safetensors"


def test_eval_reports_the_trained_accuracy(trained, capsys):
    _, out, metrics = trained
    capsys.readouterr()
    assert main(["eval", str(out), "--json"]) == 0
    evaluated = _last_json(capsys.readouterr().out)
    assert evaluated["test_acc"] == metrics["test_acc"]
    assert evaluated["weights"] == metrics["weights"]


def _accuracy(model, run) -> float:
    ds = run.dataset()
    loader = run.loader(ds.test_images, ds.test_labels)
    return evaluate(
        model, loader, num_classes=ds.num_classes, autocast=run.runtime.autocast
    ).accuracy


def test_load_inspect_and_report_see_the_reported_weights(trained):
    _, out, metrics = trained
    run = load(out)
    assert _accuracy(run.model, run) == metrics["test_acc"]
    inside = inspect_run(out)
    assert _accuracy(inside.model.to(run.runtime.device), run) == metrics["test_acc"]
    ours = {k: v.cpu() for k, v in run.fresh_model().state_dict().items()}
    for k, v in inside.model.state_dict().items():
        torch.testing.assert_close(v.cpu(), ours[k], rtol=0, atol=0)
    view = report_run(out).weights  # the report's first-layer figure
    assert view is not None
    torch.testing.assert_close(view.weight, ours[f"{view.layer}.weight"].float(), rtol=0, atol=0)


def test_the_onnx_export_classifies_the_test_set_the_same(trained, tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    _, out, metrics = trained
    onnx_path = tmp_path / "model.onnx"
    assert main(["export", str(out), "--out", str(onnx_path)]) == 0
    capsys.readouterr()
    run = load(out)
    ds = run.dataset()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    x = run.normalizer(ds.test_images).numpy()
    logits = session.run(None, {session.get_inputs()[0].name: x})[0]
    acc = float(np.mean(logits.argmax(1) == ds.test_labels.numpy()))
    assert acc == pytest.approx(metrics["test_acc"], abs=0.5 / len(ds.test_labels))
