"""Every registered step runs from its defaults on a tiny trained model, saves, reloads."""

from __future__ import annotations

import copy

import pytest
import torch

from cnnlab.compression import COMPRESSION, CompressContext, CompressState, build_step
from cnnlab.compression.state import CompressionError
from cnnlab.compression.storage import load_compressed, save_compressed


@pytest.fixture(scope="module")
def tiny_setup():
    from cnnlab.config import build_config
    from cnnlab.models.spec import build_model

    cfg = build_config({
        "data": {"dataset": "synthetic", "batch_size": 32, "eval_batch_size": 64,
                 "params": {"train_size": 64, "test_size": 32, "image_size": 12,
                            "num_classes": 4}},
        "model": {"name": "resnet20", "params": {"width": 0.25}},
        "train": {"epochs": 1, "progress": False},
    })  # fmt: skip
    ctx = CompressContext.from_config(cfg, log=lambda _m: None)
    spec = {"name": "resnet20", "params": {"width": 0.25}, "num_classes": 4, "in_chans": 1,
            "input_size": 12}  # fmt: skip
    torch.manual_seed(0)
    return ctx, spec, build_model(spec).eval()


@pytest.mark.parametrize("name", COMPRESSION.names())
def test_step_runs_from_defaults_and_its_file_reloads(name, tiny_setup, tmp_path):
    ctx, spec, model = tiny_setup
    state = CompressState(model=copy.deepcopy(model), spec=dict(spec))
    step = build_step({"name": name})
    details = step.run(state, ctx)
    assert isinstance(details, dict)
    final = state.finalized()
    path = tmp_path / f"{name}.safetensors"
    save_compressed(path, final, spec=state.spec, encodings=state.encodings, int8=state.int8)
    loaded, _ = load_compressed(path)
    x = torch.randn(4, 1, 12, 12)
    with torch.inference_mode():
        assert torch.equal(loaded(x), final(x))
    assert 0 <= ctx.accuracy(final) <= 1


def test_bad_step_options_name_the_problem():
    with pytest.raises(CompressionError, match="unknown compression 'prune'"):
        build_step({"name": "prune"})
    with pytest.raises(CompressionError, match="has no option 'bitz'"):
        build_step({"name": "kmeans", "bitz": 4})
    with pytest.raises(CompressionError, match=r"steps\[2\] \(kmeans\): bits must be"):
        build_step({"name": "kmeans", "bits": 0}, "steps[2]")
    with pytest.raises(CompressionError, match="sparsity must be a number in"):
        build_step({"name": "prune_magnitude", "sparsity": 1.5})


def test_training_inside_a_step_logs_every_epoch_as_it_finishes(tiny_setup):
    """A distillation trains for hours: its epochs must show in the log while it runs."""
    ctx, spec, model = tiny_setup
    lines: list[str] = []
    ctx = copy.copy(ctx)
    ctx.log = lines.append
    state = CompressState(model=copy.deepcopy(model), spec=dict(spec))
    build_step({"name": "distill", "epochs": 2, "width": 0.25}).run(state, ctx)
    epochs = [m for m in lines if "train epoch" in m]
    assert [m.split(":")[0].strip() for m in epochs] == ["train epoch 1/2", "train epoch 2/2"]
    assert "test acc" in epochs[0]
    ctx.finetune(state, 1)
    assert lines[-1].strip().startswith("finetune epoch 1/1: train loss")
