"""``cnnlab inspect``, in-process, on tiny synthetic runs written to temporary directories."""

from __future__ import annotations

import json

import pytest

from cnnlab.cli.main import main
from cnnlab.config import build_config
from cnnlab.training.spine import run_training

PNG = b"\x89PNG\r\n\x1a\n"


def train(root, name: str, model: str, **params):
    cfg = build_config(
        {
            "data": {
                "dataset": "synthetic",
                "batch_size": 32,
                "params": {"train_size": 96, "test_size": 24, "image_size": 12, "num_classes": 3},
            },
            "model": {"name": model, "params": params},
            "train": {"epochs": 1, "progress": False},
        }
    )
    run_training(cfg, root / name, log=lambda m: None)
    return root / name


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("inspect_cli")
    return {"cnn": train(root, "cnn", "cnn1"), "gap": train(root, "gap", "resnet20", width=0.25)}


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def test_layers_listing(runs, capsys):
    assert main(["inspect", str(runs["cnn"]), "--layers"]) == 0
    out = capsys.readouterr().out
    assert "cnn1 on 1x12x12" in out
    assert any(line.split()[:3] == ["conv", "Conv2d", "32x10x10"] for line in out.splitlines())
    assert main(["inspect", str(runs["cnn"]), "--json"]) == 0  # no action: the listing
    layers = last_json(capsys.readouterr().out)["layers"]
    assert [entry["name"] for entry in layers] == ["conv", "pool", "act", "head"]


@pytest.mark.parametrize(
    ("argv", "files"),
    [
        (["filters"], ["filters.png"]),
        (["features", "--layer", "conv", "--index", "3"], ["features_conv_test3.png"]),
        (["top-k", "--layer", "act", "--channel", "2", "--k", "5"], ["topk_act_c2.png"]),
        (["sparsity", "--max-images", "10"], ["sparsity.png"]),
        (["cam", "--index", "1"], ["gradcam_test1.png"]),
        (["distributed", "--layer", "conv"], ["distributed_conv.png",
                                               "distributed_conv_matrix.png"]),
    ],
)  # fmt: skip
def test_each_action_writes_pngs_to_the_default_directory(runs, capsys, argv, files):
    assert main(["inspect", str(runs["cnn"]), *argv, "--json"]) == 0
    result = last_json(capsys.readouterr().out)
    out_dir = runs["cnn"] / "figures" / "inside"
    assert result["files"] == [str(out_dir / f) for f in files]
    for name in files:
        assert (out_dir / name).read_bytes().startswith(PNG)


def test_json_details_and_out_directory(runs, tmp_path, capsys):
    out = tmp_path / "figs"
    argv = ["inspect", str(runs["gap"]), "cam", "--method", "cam", "--index", "2"]
    assert main([*argv, "--out", str(out), "--json"]) == 0
    result = last_json(capsys.readouterr().out)
    assert result["layer"] == "layer3" and 0 <= result["target"] < 3
    assert (out / "cam_test2.png").read_bytes().startswith(PNG)
    argv = ["inspect", str(runs["gap"]), "top-k", "--layer", "layer1", "--channel", "0"]
    assert main([*argv, "--k", "3", "--out", str(out), "--json"]) == 0
    top = last_json(capsys.readouterr().out)
    assert len(top["indices"]) == 3 and top["values"] == sorted(top["values"], reverse=True)
    assert main(["inspect", str(runs["gap"]), "sparsity", "--out", str(out), "--json"]) == 0
    rows = last_json(capsys.readouterr().out)["layers"]
    assert rows[0]["name"] == "stem.conv.act" and all(0 <= r["fraction"] <= 1 for r in rows)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["features"], "inspect features needs --layer NAME"),
        (["top-k", "--layer", "conv"], "inspect top-k needs --channel C"),
        (["features", "--layer", "convv"], "no layer 'convv'. Did you mean 'conv'"),
        (["cam", "--method", "cam"], "CAM (Zhou et al. 2016) needs"),
        (["cam", "--index", "99"], "index 99 out of range: the test split has 24"),
        (["features", "--layer", "head"], "not (B, C, h, w) feature maps"),
        (["filters", "--layers"], "give either --layers or an action"),
    ],
)
def test_bad_requests_fail_with_one_clear_line(runs, capsys, argv, message):
    assert main(["inspect", str(runs["cnn"]), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_missing_run(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "nope"), "--layers"]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
