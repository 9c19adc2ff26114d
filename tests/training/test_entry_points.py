"""Every way into a training honours the config's practices, or refuses them by key.

Each entry point (``cnnlab train``, ``compare``, an ensemble member, a compression step's
fine-tuning, a distillation student, the LR finder, an experiment's training) is given a config
with per-stage learning rates (``finetune.stage_lr_decay``), max-norm and early stopping. The
trainer's ``fit`` is wrapped to record what it was handed: the optimiser's parameter groups
must carry the scaled learning rates, and the callbacks must hold the MaxNorm constraint and
early stopping. The LR finder, a sweep of single steps, refuses them with a message naming the
key instead.
"""

from __future__ import annotations

import copy

import pytest

from cnnlab.config import ConfigError, build_config
from cnnlab.engine.early_stopping import EarlyStopping
from cnnlab.engine.regularization import MaxNorm
from cnnlab.engine.trainer import Trainer

LR, DECAY, MAX_NORM = 0.01, 0.5, 2.5
DATA = {
    "dataset": "synthetic", "batch_size": 32, "eval_batch_size": 64, "val_split": 0.25,
    "params": {"train_size": 128, "test_size": 32, "image_size": 12, "num_classes": 4},
}  # fmt: skip
TREE = {
    "data": DATA,
    "model": {"name": "cnn2"},
    "optim": {"name": "adam", "lr": LR},
    "regularization": {"max_norm": MAX_NORM},
    "finetune": {"stage_lr_decay": DECAY},
    "train": {"epochs": 1, "progress": False, "precision": "fp32",
              "early_stopping": {"enabled": True, "patience": 3}},
}  # fmt: skip
SETS = [
    "data.dataset=synthetic", "data.params.train_size=128", "data.params.test_size=32",
    "data.params.image_size=12", "data.params.num_classes=4", "data.batch_size=32",
    "data.val_split=0.25", "optim.name=adam", f"optim.lr={LR}",
    f"regularization.max_norm={MAX_NORM}",
    f"finetune.stage_lr_decay={DECAY}", "train.early_stopping.enabled=true",
    "train.precision=fp32",
]  # fmt: skip


@pytest.fixture
def fits(monkeypatch):
    """Record (callbacks, learning rates of the optimiser's groups) of every ``Trainer.fit``."""
    seen: list[tuple[list, list[float]]] = []
    original = Trainer.fit

    def recording(self, model, task, optimizer, *args, **kwargs):
        seen.append((list(self.callbacks), [g["lr"] for g in optimizer.param_groups]))
        return original(self, model, task, optimizer, *args, **kwargs)

    monkeypatch.setattr(Trainer, "fit", recording)
    return seen


def cfg(**train):
    tree = copy.deepcopy(TREE)
    tree["train"].update(train)
    return build_config(tree)


def assert_practices(seen, *, lr: float = LR) -> None:
    assert seen, "no training ran"
    for callbacks, lrs in seen:
        norms = [c for c in callbacks if isinstance(c, MaxNorm)]
        assert norms and norms[0].c == MAX_NORM
        assert any(isinstance(c, EarlyStopping) for c in callbacks)
        assert_stage_rates(lrs, lr)


def assert_stage_rates(lrs: list[float], lr: float = LR) -> None:
    """The deepest stage (and the head) at the full rate, each shallower one DECAY times less."""
    ratios = sorted({round(v / lr, 9) for v in lrs}, reverse=True)
    assert len(ratios) > 1 and ratios[0] == 1.0
    assert all(r == pytest.approx(DECAY**k) for k, r in enumerate(ratios))


def test_train(fits, tmp_path):
    from cnnlab.training.spine import run_training

    run_training(cfg(), tmp_path / "run", log=lambda m: None)
    assert_practices(fits)


def test_compare(fits, tmp_path, capsys):
    from cnnlab.cli.main import main

    sets = [a for s in SETS for a in ("--set", s)]
    code = main(["compare", "--models", "cnn2", "--epochs", "1", "--no-report",
                 "--out", str(tmp_path / "cmp"), *sets])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert_practices(fits)


def test_ensemble_member(fits):
    from cnnlab.data.bundle import build_data
    from cnnlab.ensembles.easy import train_easy_ensemble

    c = cfg()
    data = build_data(c.data, seed=0, device="cpu")
    train_easy_ensemble(c, data, members=1, log=lambda m: None)
    assert_practices(fits)


@pytest.fixture
def compress_ctx(tmp_path):
    from cnnlab.compression.context import CompressContext
    from cnnlab.compression.state import CompressState
    from cnnlab.models.spec import build_model
    from cnnlab.training.assemble import model_spec_of

    c = cfg()
    ctx = CompressContext.from_config(c, {"lr": LR}, log=lambda m: None)
    spec = model_spec_of(c, ctx.data.dataset)
    return ctx, CompressState(build_model(spec), spec)


def test_compression_step_finetuning(fits, compress_ctx):
    ctx, state = compress_ctx
    ctx.finetune(state, 1)
    assert_practices(fits)


def test_compression_finetune_section_refuses_other_keys():
    from cnnlab.compression.context import finetune_config

    with pytest.raises(ConfigError, match="max_norm"):
        finetune_config(cfg(), {"max_norm": 3.0})


def test_distillation_student(fits, compress_ctx):
    from cnnlab.compression.distillation import distill

    ctx, state = compress_ctx
    distill(epochs=1, student={"name": "cnn2", "params": {}}).apply(state, ctx)
    assert_practices(fits)


@pytest.mark.parametrize(
    ("tree", "key"),
    [
        ({"train": {"early_stopping": {"enabled": True}}}, "train.early_stopping.enabled"),
        ({"regularization": {"max_norm": MAX_NORM}}, "regularization.max_norm"),
        ({"train": {"ema": {"enabled": True}}}, "train.ema.enabled"),
    ],
)
def test_lr_finder_refuses_what_a_sweep_cannot_apply(tree, key):
    from cnnlab.config import merge_trees
    from cnnlab.training.spine import run_lr_find

    base = copy.deepcopy(TREE)
    base["train"]["early_stopping"]["enabled"] = False
    base["regularization"] = {}
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        run_lr_find(build_config(merge_trees(base, tree)), steps=3, log=lambda m: None)


def test_lr_finder_applies_the_stage_learning_rates(monkeypatch):
    import cnnlab.training.spine as spine

    groups = []

    def fake_lr_find(model, task, make_optimizer, batches, **kwargs):
        groups.append([g["lr"] for g in make_optimizer(model).param_groups])

    monkeypatch.setattr(spine, "lr_find", fake_lr_find)
    base = copy.deepcopy(TREE)
    base["train"]["early_stopping"]["enabled"] = False
    base["regularization"] = {}
    spine.run_lr_find(build_config(base), log=lambda m: None)
    assert_stage_rates(groups[0])


def test_experiment_training(fits, tmp_path):
    from cnnlab.data.datasets import load_dataset
    from cnnlab.experiments.base import Context
    from cnnlab.experiments.training import train

    ds = load_dataset("synthetic", **DATA["params"])
    ctx = Context("smoke", {}, [0], tmp_path, log=lambda m: None)
    tree = {k: v for k, v in copy.deepcopy(TREE).items() if k != "data"}
    tree["data"] = {"val_split": 0.25}
    train(ctx, "arm", 0, tree, ds)
    assert_practices(fits)


def test_in_memory_training_refuses_what_needs_a_run_directory():
    from cnnlab.training.spine import train_in_memory

    with pytest.raises(ConfigError, match=r"train\.tensorboard"):
        train_in_memory(cfg(tensorboard=True), log=lambda m: None)
