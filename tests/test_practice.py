"""Training practice wired through config: regularisation, early stopping, fine-tuning,
initialisation, feature losses and mixing as tasks (handbook ch. 7-11)."""

from __future__ import annotations

import pytest
import torch

from cnnlab.config import ConfigError, build_config
from cnnlab.engine.checkpoint import load_checkpoint
from cnnlab.engine.finetune import model_stages
from cnnlab.engine.regularization import PenalizedTask, apply_max_norm, penalized_weights
from cnnlab.engine.tasks import ClassificationTask
from cnnlab.losses import CrossEntropy
from cnnlab.models.spec import build_model
from cnnlab.training.spine import run_training


def _quiet(msg):
    pass


def test_early_stopping_stops_and_restores_the_best_epoch(tmp_path, tiny_cfg):
    cfg = tiny_cfg(
        data={"val_split": 0.25},
        optim={"name": "sgd", "lr": 1e-9},  # nothing improves after the first epoch
        train={"epochs": 6, "early_stopping": {"enabled": True, "patience": 2, "min_delta": 1e-3}},
    )
    metrics = run_training(cfg, tmp_path / "run", log=_quiet)
    state = load_checkpoint(tmp_path / "run").meta["state"]
    assert len(state["history"]) == 3 and "did not improve for 2 epochs" in state["stop_reason"]
    assert metrics["best_epoch"] == state["best_epoch"] == 1
    assert (tmp_path / "run" / "best.safetensors").is_file()


def test_early_stopping_needs_a_validation_split():
    with pytest.raises(ConfigError, match="needs a validation split"):
        build_config({"train": {"early_stopping": {"enabled": True}}})


def test_max_norm_bounds_every_unit(tmp_path, tiny_cfg):
    cfg = tiny_cfg(optim={"name": "sgd", "lr": 5.0}, regularization={"max_norm": 0.5})
    run_training(cfg, tmp_path / "run", log=_quiet)
    state = load_checkpoint(tmp_path / "run").model_state()
    for key in ("conv.weight", "head.weight"):
        norms = state[key].flatten(1).norm(dim=1)
        assert norms.max() <= 0.5 + 1e-5, key


def test_max_norm_projection_is_exact():
    lin = torch.nn.Linear(3, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[3.0, 4.0, 0.0], [0.1, 0.0, 0.0]]))
    apply_max_norm(lin, 1.0)
    torch.testing.assert_close(lin.weight, torch.tensor([[0.6, 0.8, 0.0], [0.1, 0.0, 0.0]]))


def test_penalties_add_exactly_their_terms():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten(),
                                torch.nn.Linear(8, 3))  # fmt: skip
    x, y = torch.randn(4, 1, 4, 4), torch.tensor([0, 1, 2, 0])
    base = ClassificationTask(CrossEntropy())
    plain, _ = base.training_step(model, x, y)
    l1, _ = PenalizedTask(base, l1=0.1).training_step(model, x, y)
    both, _ = PenalizedTask(base, l1=0.1, l2=0.2).training_step(model, x, y)
    w = penalized_weights(model)
    assert len(w) == 2  # biases are not penalised
    abs_sum = sum(t.abs().sum() for t in w)
    sq_sum = sum(t.pow(2).sum() for t in w)
    torch.testing.assert_close(l1, plain + 0.1 * abs_sum)
    torch.testing.assert_close(both, plain + 0.1 * abs_sum + 0.1 * sq_sum)


def test_finetune_new_head_frozen_stage_and_lr_groups(tmp_path, tiny_cfg):
    run_training(tiny_cfg(model={"name": "cnn2"}), tmp_path / "src", log=_quiet)
    source = load_checkpoint(tmp_path / "src").model_state()
    cfg = tiny_cfg(
        model={"name": "cnn2"},
        data={"params": {"train_size": 96, "test_size": 30, "image_size": 12, "num_classes": 3}},
        finetune={"checkpoint": str(tmp_path / "src"), "freeze_stages": 1,
                  "stage_lr_decay": 0.5, "head_lr_mult": 10.0},
    )  # fmt: skip
    run_training(cfg, tmp_path / "ft", log=_quiet)
    tuned = load_checkpoint(tmp_path / "ft").model_state()
    assert tuned["head.weight"].shape == (3, 128)
    assert torch.equal(tuned["features.0.weight"], source["features.0.weight"])  # frozen
    assert not torch.equal(tuned["features.2.weight"], source["features.2.weight"])
    groups = load_checkpoint(tmp_path / "ft").meta["optimizer"]["param_groups"]
    lrs = sorted({g["initial_lr"] for g in groups})
    # stages conv1 (frozen, so absent), conv2: lr * 0.5, fc-128: lr, head: lr * 10
    assert lrs == pytest.approx([0.0005, 0.001, 0.01])


def test_finetune_refuses_another_architecture(tmp_path, tiny_cfg):
    run_training(tiny_cfg(), tmp_path / "src", log=_quiet)  # cnn1
    cfg = tiny_cfg(model={"name": "cnn2"}, finetune={"checkpoint": str(tmp_path / "src")})
    from cnnlab.engine.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="does not match this one outside the head"):
        run_training(cfg, tmp_path / "ft", log=_quiet)


def test_stages_of_common_models():
    spec = {"name": "resnet20", "params": {}, "num_classes": 10, "in_chans": 1, "input_size": 28}
    assert len(model_stages(build_model(spec))) == 4  # stem + 3 residual stages
    spec = {**spec, "name": "cnn2"}
    assert len(model_stages(build_model(spec))) == 3  # conv, conv, fc-128


@pytest.mark.parametrize(
    "sections",
    [
        {"model": {"name": "cnn1", "init": "xavier_uniform"}},
        {"model": {"name": "cnn1", "init": "lsuv"}},
        {"loss": {"name": "center", "params": {"lam": 0.01}}},
        {"loss": {"name": "l_softmax", "params": {"m": 2}}},
        {"loss": {"name": "cross_entropy", "mix": {"name": "mixup", "alpha": 0.2}}},
        {"loss": {"name": "multiclass_hinge"}},
        {"regularization": {"l1": 1e-5, "l2": 1e-4}},
    ],
)
def test_practice_options_train_end_to_end(tmp_path, tiny_cfg, sections):
    metrics = run_training(tiny_cfg(**sections), tmp_path / "run", log=_quiet)
    assert 0.0 <= metrics["test_acc"] <= 1.0 and metrics["epochs"] == 2


def test_center_loss_state_survives_resume(tmp_path, tiny_cfg):
    from cnnlab.engine.callbacks import Callback

    class Kill(Callback):
        def on_step_end(self, trainer, state):
            if state.step == 10:
                raise KeyboardInterrupt

    cfg = tiny_cfg(loss={"name": "center"}, train={"epochs": 2, "checkpoint_steps": 4})
    ref = run_training(cfg, tmp_path / "ref", log=_quiet)
    with pytest.raises(KeyboardInterrupt):
        run_training(cfg, tmp_path / "cut", log=_quiet, callbacks=[Kill()])
    resumed = run_training(cfg, tmp_path / "cut", resume=True, log=_quiet)
    assert resumed["test_loss"] == ref["test_loss"]
    a, b = load_checkpoint(tmp_path / "ref"), load_checkpoint(tmp_path / "cut")
    assert torch.equal(a.tensors["task.centers"], b.tensors["task.centers"])


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"model": {"init": "xavier_unform"}}, "model.init"),
        ({"loss": {"mix": {"name": "mixupp"}}}, "loss.mix.name"),
        ({"loss": {"name": "center", "mix": {"name": "mixup"}}}, "works with plain losses"),
        ({"loss": {"name": "l_softmax", "params": {"m": 0}}}, "m"),
        ({"regularization": {"max_norm": -1}}, "regularization.max_norm"),
        ({"finetune": {"checkpoint": "/nonexistent/run"}}, "finetune.checkpoint"),
        ({"model": {"params": {"activation": "relu6"}}}, "activation"),
    ],
)
def test_bad_practice_config_fails_at_load(sections, message):
    with pytest.raises(ConfigError, match=message):
        build_config(sections)


def test_plateau_schedule_reacts_and_resumes(tmp_path, tiny_cfg):
    cfg = tiny_cfg(
        data={"val_split": 0.25},
        optim={"name": "sgd", "lr": 1e-9},
        schedule={"name": "plateau", "params": {"patience": 0, "factor": 0.5, "threshold": 0.1}},
        train={"epochs": 3},
    )
    run_training(cfg, tmp_path / "run", log=_quiet)
    ckpt = load_checkpoint(tmp_path / "run")
    lrs = [h["lr"] for h in ckpt.meta["state"]["history"]]
    assert lrs[0] == pytest.approx(1e-9) and lrs[-1] < lrs[0]
    assert ckpt.meta["schedule_factor"]["current"] < 1.0


def test_lr_find_command(tmp_path, capsys):
    from cnnlab.cli.main import main

    argv = ["lr-find", "--dataset", "synthetic", "--model", "cnn1", "--steps", "30",
            "--set", "data.params.image_size=12", "--set", "data.params.train_size=256",
            "--out", str(tmp_path / "lr.png"), "--json"]  # fmt: skip
    assert main(argv) == 0
    import json

    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 1e-7 <= out["suggestion"] <= 10 and (tmp_path / "lr.png").stat().st_size > 1000


def test_snapshots_during_train(tmp_path, tiny_cfg):
    from cnnlab.ensembles import Ensemble

    cfg = tiny_cfg(
        schedule={"name": "cosine_restarts", "params": {"cycles": 4}},
        optim={"name": "sgd", "lr": 0.1},
        train={"epochs": 2, "snapshots": "cycles"},
    )
    run_training(cfg, tmp_path / "run", log=_quiet)
    snaps = sorted(p.name for p in (tmp_path / "run").glob("snapshot_*.safetensors"))
    assert len(snaps) == 4
    ens = Ensemble.from_snapshots(tmp_path / "run", last=2)
    assert len(ens.members) == 2
    with pytest.raises(ConfigError, match="cosine_restarts"):
        tiny_cfg(train={"snapshots": "cycles"})
