"""The command line, in-process, into temporary directories."""

from __future__ import annotations

import json

import pytest

from cnnlab.cli.main import main

TINY = [
    "--dataset", "synthetic", "--model", "cnn1", "--epochs", "1", "--no-progress",
    "--set", "data.params.train_size=128", "--set", "data.params.test_size=32",
    "--set", "data.params.image_size=12", "--set", "data.batch_size=32",
]  # fmt: skip
# For comparisons with a float32 computation by hand: precision "auto" picks bf16 autocast on a
# CPU with native bf16 (the AVX-512 machine), and one image of 128 can then change its class.
TINY_FP32 = [*TINY, "--set", "train.precision=fp32"]


def _last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def test_train_then_eval_report_the_same_metrics(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *TINY, "--out", str(run), "--json"]) == 0
    trained = _last_json(capsys.readouterr().out)
    for key in ("test_acc", "test_loss", "params", "train_seconds"):
        assert key in trained
    assert main(["eval", str(run), "--json"]) == 0
    evaluated = _last_json(capsys.readouterr().out)
    assert evaluated["test_acc"] == trained["test_acc"]
    assert evaluated["test_loss"] == pytest.approx(trained["test_loss"], rel=1e-6)
    assert evaluated["params"] == trained["params"]


def test_existing_run_is_not_overwritten(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *TINY, "--out", str(run)]) == 0
    before = (run / "checkpoint.safetensors").read_bytes()
    assert main(["train", *TINY, "--out", str(run)]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (run / "checkpoint.safetensors").read_bytes() == before


def test_resume_extends_a_finished_run(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *TINY, "--out", str(run)]) == 0
    assert main(["train", "--resume", "--out", str(run), "--epochs", "2", "--json"]) == 0
    assert _last_json(capsys.readouterr().out)["epochs"] == 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--model", "resnet21", "--epochs", "1"], "unknown model 'resnet21'"),
        (["train", "--set", "optim.lr=-1"], "optim.lr: expected a learning rate > 0"),
        (["train", "--resume"], "holds no cnnlab run"),
        (["summary", "cnn2", "--input", "28x28"], "expected CxHxW"),
        (["eval", "/nonexistent/run"], "checkpoint not found"),
        (["train", "--dataset", "mnist", "--data-dir", "/nonexistent"], "/nonexistent"),
    ],
)
def test_errors_are_one_clear_line(argv, message, capsys, tmp_path):
    assert main([*argv, "--out", str(tmp_path / "r")] if argv[0] == "train" else argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("cnnlab: error:") and message in err
    assert "Traceback" not in err
    assert not (tmp_path / "r" / "checkpoint.safetensors").exists()


def test_summary_json_and_table(capsys):
    assert main(["summary", "cnn2", "--input", "1x28x28", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["params"] == 1_199_882 and info["macs"] == 11_992_448
    layer = info["layers"][0]
    assert set(layer) == {
        "name",
        "type",
        "output_shape",
        "params",
        "macs",
        "receptive_field",
        "jump",
    }
    assert main(["summary", "resnet20", "--input", "3x32x32"]) == 0
    assert "Total params" in capsys.readouterr().out


@pytest.mark.parametrize("kind", ["models", "datasets", "losses", "optimizers", "schedules"])
def test_list_one_per_line(kind, capsys):
    assert main(["list", kind]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) >= 1 and all(line.split()[0].islower() for line in lines)


def test_python_dash_m_entry_point():
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "cnnlab", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("cnnlab ")


def _saved_run_by_hand(run):
    """The run's saved model (eval mode), its data set and its normalisation, rebuilt from the
    checkpoint without cnnlab's evaluation code."""
    import torch

    from cnnlab.data.datasets import load_dataset
    from cnnlab.engine.checkpoint import load_checkpoint
    from cnnlab.models.spec import build_model

    ckpt = load_checkpoint(run)
    model = build_model(ckpt.meta["model"])
    ckpt.load_model(model)
    dmeta = ckpt.meta["data"]
    data = load_dataset(dmeta["dataset"], None, **dmeta.get("params", {}))
    mean = torch.tensor(dmeta["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(dmeta["std"]).view(1, -1, 1, 1)
    return model.eval(), data, lambda images: (images.float() / 255 - mean) / std


def test_eval_on_the_training_set_matches_a_hand_evaluation(tmp_path, capsys):
    import torch

    run = tmp_path / "run"
    assert main(["train", *TINY_FP32, "--out", str(run)]) == 0
    assert main(["eval", str(run), "--split", "train", "--json"]) == 0
    out = capsys.readouterr().out
    got = _last_json(out)
    assert "128 train images: train acc" in out and got["num_images"] == 128
    # independently: the saved weights, the training images normalised by hand, argmax
    model, data, normalise = _saved_run_by_hand(run)
    with torch.no_grad():
        logits = model(normalise(data.train_images))
    expected = (logits.argmax(1) == data.train_labels).float().mean().item()
    assert got["train_acc"] == pytest.approx(expected, abs=1e-6)
    assert "test_acc" not in got


def test_eval_with_flip_tta_matches_averaging_an_image_and_its_mirror(tmp_path, capsys):
    import torch

    from cnnlab.cli.train_cmd import TTA_PRESETS
    from cnnlab.evaluation.tta import PRESETS

    assert TTA_PRESETS == PRESETS  # the CLI's copy, kept so it starts without torch
    run = tmp_path / "run"
    assert main(["train", *TINY_FP32, "--out", str(run)]) == 0
    assert main(["eval", str(run), "--tta", "flip", "--json"]) == 0
    out = capsys.readouterr().out
    got = _last_json(out)
    assert "with flip test-time augmentation" in out and got["tta"] == "flip"
    # independently: mean of the softmax of the test images and of their mirror images
    model, data, normalise = _saved_run_by_hand(run)
    x = normalise(data.test_images)
    with torch.no_grad():
        probs = (model(x).softmax(1) + model(x.flip(3)).softmax(1)) / 2
    expected_acc = (probs.argmax(1) == data.test_labels).float().mean().item()
    expected_loss = torch.nn.functional.nll_loss(probs.log(), data.test_labels).item()
    assert got["test_acc"] == pytest.approx(expected_acc, abs=1e-6)
    assert got["test_loss"] == pytest.approx(expected_loss, rel=1e-4)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_eval_uses_the_precision_the_run_trained_with(precision, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *TINY, "--set", f"train.precision={precision}", "--out", str(run)]) == 0
    assert main(["eval", str(run), "--json"]) == 0
    got = _last_json(capsys.readouterr().out)
    assert got["precision"] == precision
    # and so reproduces the run's own test accuracy, whatever "auto" picks on this machine
    assert got["test_acc"] == json.loads((run / "metrics.json").read_text())["test_acc"]
