"""What comes after training, on a GPU: evaluation (against the CPU), Grad-CAM/CAM and feature
maps (against the CPU), an ensemble, ONNX export of a CUDA-trained run, int8 compression's CPU
fallback."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
import yaml

from cnnlab.cli.main import main
from cnnlab.config import build_config
from cnnlab.data.bundle import build_data
from cnnlab.engine.checkpoint import load_checkpoint
from cnnlab.evaluation.evaluate import evaluate
from cnnlab.inspect.cam import class_activation_map, grad_cam
from cnnlab.inspect.features import feature_maps
from cnnlab.models import create_model
from cnnlab.training.spine import run_training

TINY = {
    "data": {
        "dataset": "synthetic", "batch_size": 32, "eval_batch_size": 64,
        "params": {"train_size": 256, "test_size": 64, "image_size": 12, "num_classes": 4},
    },
    "model": {"name": "cnn1"},
    "train": {"epochs": 2, "progress": False, "device": "cuda", "precision": "fp32"},
}  # fmt: skip


def _tree(**sections):
    tree = copy.deepcopy(TINY)
    for key, value in sections.items():
        tree.setdefault(key, {}).update(value)
    return tree


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    root = tmp_path_factory.mktemp("cuda_runs")
    for name, model in (("cnn", {"name": "cnn1"}),
                        ("gap", {"name": "resnet20", "params": {"width": 0.25}})):  # fmt: skip
        run_training(build_config(_tree(model=model)), root / name, log=lambda m: None)
    return root


def _model(run_dir, device):
    ckpt = load_checkpoint(run_dir)
    spec = ckpt.meta["model"]
    net = create_model(spec["name"], num_classes=spec["num_classes"], in_chans=spec["in_chans"],
                       input_size=spec["input_size"], **spec["params"])  # fmt: skip
    ckpt.load_model(net)
    return net.to(device).eval()


def test_evaluation_on_cuda_equals_the_cpu(runs, exact_cuda, capsys):
    cfg = build_config(_tree())
    res = {}
    for dev in ("cpu", "cuda"):
        data = build_data(cfg.data, seed=0, device=torch.device(dev))
        res[dev] = evaluate(_model(runs / "cnn", dev), data.test, num_classes=4)
    assert res["cuda"].accuracy == res["cpu"].accuracy
    assert torch.equal(res["cuda"].confusion, res["cpu"].confusion)
    assert res["cuda"].loss == pytest.approx(res["cpu"].loss, rel=1e-4, abs=1e-6)
    # the CLI re-evaluates the CUDA-trained run and agrees with its own metrics
    assert main(["eval", str(runs / "cnn"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    metrics = json.loads((runs / "cnn" / "metrics.json").read_text())
    assert out["test_acc"] == pytest.approx(metrics["test_acc"], abs=1 / 64 + 1e-9)


def test_grad_cam_cam_and_feature_maps_on_cuda_equal_the_cpu(runs, exact_cuda):
    images = torch.randn(6, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    for run, fn in (("cnn", grad_cam), ("gap", grad_cam), ("gap", class_activation_map)):
        cpu = fn(_model(runs / run, "cpu"), images)
        gpu = fn(_model(runs / run, "cuda"), images.cuda())
        assert gpu.maps.is_cuda and gpu.layer == cpu.layer
        assert torch.equal(gpu.targets.cpu(), cpu.targets)
        assert torch.allclose(gpu.maps.cpu(), cpu.maps, rtol=1e-4, atol=1e-5), (run, fn)
    cpu = feature_maps(_model(runs / "cnn", "cpu"), "conv", images)
    gpu = feature_maps(_model(runs / "cnn", "cuda"), "conv", images.cuda())
    assert torch.allclose(gpu.cpu(), cpu, rtol=1e-4, atol=1e-5)


def test_inspect_cli_draws_cam_for_a_cuda_trained_run(runs, tmp_path, capsys):
    argv = ["inspect", str(runs / "cnn"), "cam", "--index", "1", "--out", str(tmp_path), "--json"]
    assert main(argv) == 0
    files = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["files"]
    assert files and all(Path(f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for f in files)


def test_onnx_export_of_a_cuda_trained_run_matches_onnxruntime(runs, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "m.onnx"
    assert main(["export", str(runs / "cnn"), "--out", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["verified"] is True and result["max_abs_diff"] <= 1e-4 and out.is_file()


def test_seed_ensemble_on_cuda(tmp_path, capsys):
    tree = {"name": "tiny-cuda", "base": _tree(data={"val_split": 0.25}, train={"epochs": 1}),
            "members": [{"name": "a", "seeds": [0, 1]}],
            "combine": {"rules": ["mean", "majority", "stacking"],
                        "stacking": {"folds": 2, "epochs": 20}}}  # fmt: skip
    path = tmp_path / "ens.yaml"
    path.write_text(yaml.safe_dump(tree))
    assert main(["ensemble", "--config", str(path), "--out", str(tmp_path / "out")]) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert {r["rule"] for r in results["rows"]} == {"mean", "majority", "stacking"}
    assert all(0.0 <= r["test_acc"] <= 1.0 for r in results["rows"])
    member = json.loads((tmp_path / "out" / "members" / "a-s0" / "metrics.json").read_text())
    assert member["device"].startswith("cuda")


def test_int8_compression_of_a_cuda_run_falls_back_to_the_cpu_and_says_so(runs, tmp_path,
                                                                            capsys):  # fmt: skip
    cfg = tmp_path / "int8.yaml"
    cfg.write_text("steps:\n  - {name: int8, calibration_batches: 2}\n")
    argv = ["compress", str(runs / "cnn"), "--config", str(cfg), "--out", str(tmp_path / "c"),
            "--no-timing"]  # fmt: skip
    assert main(argv) == 0
    assert "int8: torch's int8 kernels run on the CPU only" in capsys.readouterr().err
