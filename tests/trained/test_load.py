"""``cnnlab.load``: which weights, the data and runtime description, clear errors."""

from __future__ import annotations

import copy
import json

import pytest
import torch

import cnnlab
from cnnlab.config import build_config
from cnnlab.engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from cnnlab.models.spec import build_model
from cnnlab.trained.evaluation import evaluate_run
from cnnlab.trained.run import load
from cnnlab.training.spine import run_training

TREE = {
    "data": {
        "dataset": "synthetic", "batch_size": 32, "eval_batch_size": 64,
        "params": {"train_size": 256, "test_size": 64, "image_size": 12, "num_classes": 4},
    },
    "model": {"name": "cnn1"},
    "optim": {"name": "adam", "lr": 0.01},
    "train": {"epochs": 2, "progress": False, "precision": "fp32"},
}  # fmt: skip


def train(out, **sections):
    tree = copy.deepcopy(TREE)
    for name, values in sections.items():
        tree.setdefault(name, {}).update(values)
    return run_training(build_config(tree), out, log=lambda m: None)


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("plain") / "run"
    return out, train(out)


def test_load_describes_the_run(plain_run):
    out, metrics = plain_run
    run = cnnlab.load(out)
    assert run.weights == out / "checkpoint.safetensors" and metrics["weights"] == run.weights.name
    assert run.spec["name"] == "cnn1" and run.spec["in_chans"] == 1
    assert run.data.dataset == "synthetic" and len(run.classes) == 4
    assert run.data.mode == "L" and run.data.fit == "stretch" and run.data.input_size == 12
    assert run.runtime.precision == "fp32" and run.metrics["test_acc"] == metrics["test_acc"]
    assert not run.model.training
    assert load(out / "checkpoint.safetensors").weights == run.weights


def test_an_unfinished_run_gives_its_checkpoint(plain_run, tmp_path):
    out, _ = plain_run
    ckpt = load_checkpoint(out)
    bare = tmp_path / "checkpoint.safetensors"
    model = build_model(ckpt.meta["model"])
    ckpt.load_model(model)
    save_checkpoint(bare, model=model, meta=ckpt.meta, rng=False)
    run = load(tmp_path)
    assert run.metrics is None and run.weights == bare


def test_a_metrics_file_naming_missing_weights_is_refused(plain_run, tmp_path):
    out, metrics = plain_run
    copy_dir = tmp_path / "run"
    copy_dir.mkdir()
    (copy_dir / "checkpoint.safetensors").write_bytes((out / "checkpoint.safetensors").read_bytes())
    (copy_dir / "metrics.json").write_text(json.dumps({**metrics, "weights": "ema.safetensors"}))
    with pytest.raises(CheckpointError, match=r"metrics\.json: reports the weights of 'ema"):
        load(copy_dir)


def test_a_checkpoint_without_model_metadata_is_refused(tmp_path):
    save_checkpoint(tmp_path / "checkpoint.safetensors", model=torch.nn.Linear(2, 2), meta={})
    with pytest.raises(CheckpointError, match="no model or data metadata"):
        load(tmp_path)


def test_an_older_run_without_the_weights_key_follows_early_stopping(tmp_path):
    out = tmp_path / "run"
    train(out, data={"val_split": 0.25}, train={"epochs": 4, "early_stopping": {
        "enabled": True, "patience": 1}})  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["weights"] == "best.safetensors"
    del metrics["weights"]
    (out / "metrics.json").write_text(json.dumps(metrics))
    assert load(out).weights == out / "best.safetensors"


def test_fitted_preprocessing_is_saved_and_applied_by_eval(tmp_path):
    # cnnlab eval used to ignore data.preprocess: a ZCA-whitened run was evaluated on raw pixels.
    out = tmp_path / "run"
    metrics = train(out, data={"preprocess": [{"name": "zca_whitening", "eps": 0.1}]})
    run = load(out)
    assert len(run.transform) == 1 and run.transform.steps[0].matrix.shape == (144, 144)
    assert evaluate_run(out, log=lambda m: None)["test_acc"] == metrics["test_acc"]


def test_an_ema_run_reports_and_loads_the_average(tmp_path):
    out = tmp_path / "run"
    metrics = train(out, train={"ema": {"enabled": True, "decay": 0.9}})
    assert metrics["weights"] == "ema.safetensors"
    run = load(out)
    last = load_checkpoint(out).model_state()
    loaded = run.fresh_model().state_dict()
    assert any(not torch.equal(last[k], loaded[k]) for k in loaded)  # not the last step's
    assert evaluate_run(out, log=lambda m: None)["test_acc"] == metrics["test_acc"]
    history = (out / "history.csv").read_text().splitlines()
    assert len(history) == 3  # header + 2 epochs, evaluated on the average


def test_an_ema_run_resumes_its_average(tmp_path):
    from cnnlab.cli.main import main

    straight, split = tmp_path / "straight", tmp_path / "split"
    train(straight, train={"epochs": 3, "ema": {"enabled": True, "decay": 0.9}})
    train(split, train={"epochs": 2, "ema": {"enabled": True, "decay": 0.9}})
    assert main(["train", "--resume", "--out", str(split), "--epochs", "3"]) == 0
    a = load(straight).fresh_model().state_dict()
    b = load(split).fresh_model().state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
