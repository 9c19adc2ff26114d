"""Rebuilding a trained run and the "inside the network" report figures (tiny synthetic runs)."""

from __future__ import annotations

import pytest
import torch

from cnnlab.config import build_config
from cnnlab.engine.checkpoint import CheckpointError, load_checkpoint
from cnnlab.inspect.features import top_k_activations
from cnnlab.inspect.run_figures import (
    CAPTIONS,
    cam_figure,
    distributed_figures,
    inside_figures,
    load_run,
    top_k_figure,
)
from cnnlab.training.spine import run_training

PNG = b"\x89PNG\r\n\x1a\n"


def train(root, name: str, model: str, **params) -> object:
    cfg = build_config(
        {
            "data": {
                "dataset": "synthetic",
                "batch_size": 32,
                "eval_batch_size": 64,
                "params": {"train_size": 128, "test_size": 40, "image_size": 12, "num_classes": 4},
            },
            "model": {"name": model, "params": params},
            "train": {"epochs": 1, "progress": False},
        }
    )
    run_training(cfg, root / name, log=lambda m: None)
    return root / name


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("inside")
    return {
        "cnn": train(root, "cnn", "cnn1"),
        "softmax": train(root, "softmax", "softmax"),
        "resnet": train(root, "resnet", "resnet20", width=0.25),
    }


def test_load_run_restores_weights_and_data(runs):
    run = load_run(runs["cnn"])
    state = load_checkpoint(runs["cnn"]).model_state()
    for name, tensor in run.model.state_dict().items():
        assert torch.equal(tensor, state[name]), name
    assert not run.model.training
    assert run.input_size == (1, 12, 12) and len(run.classes) == 4
    assert run.images("test").dtype == torch.uint8 and len(run.images("test")) == 40
    same = load_run(runs["cnn"] / "checkpoint.safetensors")  # a checkpoint file works too
    assert same.run_dir == runs["cnn"]
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_run(runs["cnn"] / "nope")
    with pytest.raises(ValueError, match=r"index 40 out of range: the test split has 40"):
        run.pick([40])


def test_inside_figures_are_pngs_with_captions(runs):
    figs = inside_figures(runs["cnn"], max_images=4)
    assert set(figs) == {"filters", "features_early", "features_late", "gradcam", "sparsity"}
    assert set(figs) <= set(CAPTIONS)
    assert all(png.startswith(PNG) and len(png) > 500 for png in figs.values())
    # softmax regression: no conv and no activation, so nothing applies
    assert inside_figures(runs["softmax"]) == {}


def test_inside_figures_of_a_residual_net(runs):
    figs = inside_figures(runs["resnet"], max_images=2)
    assert {"filters", "features_early", "features_late", "gradcam", "sparsity"} == set(figs)


def test_top_k_figure_reports_the_brute_force_images(runs):
    run = load_run(runs["cnn"])
    png, top = top_k_figure(run, "conv", 5, k=4)
    assert png.startswith(PNG)
    x = run.normalizer(run.images("test"))
    with torch.no_grad():
        scores = run.model.conv(x)[:, 5].amax(dim=(1, 2))
    assert top.indices.tolist() == scores.argsort(descending=True)[:4].tolist()
    again = top_k_activations(run.model, "conv", 5, run.images("test"), k=4,
                              transform=run.normalizer)  # fmt: skip
    assert torch.equal(again.indices, top.indices)


def test_cam_and_distributed_figures(runs):
    run = load_run(runs["resnet"])
    png, res = cam_figure(run, [0, 3], method="cam")
    assert png.startswith(PNG) and res.layer == "layer3" and res.maps.shape == (2, 12, 12)
    png, res = cam_figure(run, [1], method="gradcam", layer="layer2")
    assert png.startswith(PNG) and res.layer == "layer2"
    overlay, matrix, view = distributed_figures(run, "layer3", n_images=3, n_channels=2)
    assert overlay.startswith(PNG) and matrix.startswith(PNG)
    assert view.maps.shape[:2] == (3, 2) and view.fires.shape[0] == 3
    with pytest.raises(ValueError, match=r"method must be 'cam' or 'gradcam'"):
        cam_figure(run, [0], method="deconv")
