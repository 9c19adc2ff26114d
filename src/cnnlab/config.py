"""Run configuration: frozen dataclasses per section, loaded as defaults < YAML < ``--set``.

Every value is checked when the config is loaded, before any data is read: unknown keys
(with close matches), wrong types, out-of-range numbers and unknown component names all fail
with a message that names the key, what was expected and what was found. Component options
(``model.params``, ``loss.params``, ...) are checked against the registered builder's signature.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import importlib.util
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cnnlab.coercion import coerce_scalar, coerce_union, is_union
from cnnlab.engine.rundir import RunDir
from cnnlab.errors import ConfigError


@dataclass(frozen=True)
class DataConfig:
    """Where the images come from and how they are batched (handbook §1.4, §6, §11.2.1)."""

    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    allow_sample: bool = True  # fall back to the embedded Fashion-MNIST sample
    val_split: float = 0.0  # fraction of the training set held out (stratified, fixed seed)
    split_seed: int = 0
    batch_size: int = 100
    eval_batch_size: int = 1000
    normalize: str = "per-channel"  # statistics from the training split only
    drop_last: bool = False
    params: Mapping[str, Any] = field(default_factory=dict)  # dataset builder options
    # Handbook ch. 5/6/12: batched augmentation (a list of names or {name: .., option: ..}),
    # preprocessing fitted on the training split (mean_image, pca/zca_whitening), a sampler
    # (oversample, undersample, class_balanced, balanced_batches) and an optional imbalance
    # profile applied to the training split ({profile: long_tail, imbalance: 100}).
    augment: list[Any] = field(default_factory=list)
    preprocess: list[Any] = field(default_factory=list)
    sampler: str | Mapping[str, Any] | None = None
    imbalance: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class ModelConfig:
    name: str = "cnn2"
    params: Mapping[str, Any] = field(default_factory=dict)  # builder options
    # Handbook ch. 7: None keeps each model's own init; a name ("kaiming_normal") or a mapping
    # by layer type ({conv: .., linear: .., bias: .., norm: ..}); "lsuv" for data-dependent.
    init: str | Mapping[str, Any] | None = None


@dataclass(frozen=True)
class LossConfig:
    name: str = "cross_entropy"
    params: Mapping[str, Any] = field(default_factory=dict)
    mix: Mapping[str, Any] | None = None  # {name: mixup|cutmix, alpha: .., p: ..}


@dataclass(frozen=True)
class RegularizationConfig:
    """Handbook ch. 10. l2 as weight decay lives in ``optim.weight_decay``; these are explicit
    penalties added to the loss (both set = elastic net) and the max-norm constraint."""

    l1: float = 0.0  # lambda_1 * sum |w| over conv/linear weights
    l2: float = 0.0  # lambda_2 / 2 * sum w^2 over conv/linear weights
    max_norm: float | None = None  # ||w_unit||_2 <= c after every step (c = 3 or 4 usual)


@dataclass(frozen=True)
class EarlyStoppingConfig:
    """Stop when the validation metric has not improved for ``patience`` epochs (§10.5)."""

    enabled: bool = False
    metric: str = "val_loss"  # val_loss | val_acc
    patience: int = 5
    min_delta: float = 0.0
    restore_best: bool = True  # end with the best epoch's weights


@dataclass(frozen=True)
class EmaConfig:
    """Exponential moving average of the weights (``cnnlab.engine.ema``): evaluation, the
    checkpoint's final weights and ``cnnlab.load`` use the average when enabled."""

    enabled: bool = False
    decay: float = 0.99  # w_ema <- decay * w_ema + (1 - decay) * w
    every: int = 1  # optimiser steps between updates
    warmup: bool = True  # decay_n = min(decay, (1 + n) / (10 + n)) for the n-th update
    bn: str = "average"  # batch-norm running statistics: average | copy


@dataclass(frozen=True)
class FinetuneConfig:
    """Start from a trained checkpoint (handbook §11.2.5)."""

    checkpoint: str | None = None  # run directory or checkpoint.safetensors
    freeze_stages: int = 0  # keep the first k stages fixed
    stage_lr_decay: float = 1.0  # stage i of n gets lr * decay^(n-1-i): deeper layers learn faster
    head_lr_mult: float = 1.0  # the (new) classifier's lr multiplier


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser (handbook §11.2.4); weight decay is the l2 regulariser of §10.1."""

    name: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    decay_norm_and_bias: bool = False  # l2 on BN/bias parameters is usually harmful
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ScheduleConfig:
    """Learning-rate schedule (handbook §11.2.2), stepped once per iteration."""

    name: str = "constant"
    warmup_epochs: float = 0.0
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    channels_last: str = "auto"  # auto | on | off
    compile: bool = False  # torch.compile the network (engine.runtime.Runtime.compile_model)
    # default | reduce-overhead (+ CUDA graphs) | max-autotune | max-autotune-no-cudagraphs
    compile_mode: str = "default"
    sync_bn: bool = False  # SyncBatchNorm across processes under torchrun
    threads: int | None = None  # torch intra-op threads (None: torch's default)
    grad_clip: float | None = None
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    ema: EmaConfig = field(default_factory=EmaConfig)
    eval_every: int = 1  # epochs between evaluations
    checkpoint_every: int = 1  # epochs between checkpoints (0: only at the end)
    checkpoint_steps: int = 0  # also every N optimiser steps (0: off), for long epochs
    progress: bool = True
    tensorboard: bool = False  # also write TensorBoard events to RUN_DIR/tensorboard
    # §13.2.1 snapshot ensembles: save the weights at the end of every cosine_restarts cycle
    # ("cycles"/"on") or of every epoch ("epochs") as RUN_DIR/snapshot_k.safetensors.
    snapshots: str = "off"


@dataclass(frozen=True)
class RunConfig:
    """One training run: every section plus the seed and an optional run name."""

    name: str | None = None
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    regularization: RegularizationConfig = field(default_factory=RegularizationConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))

    def replace(self, **sections: Any) -> RunConfig:
        return dataclasses.replace(self, **sections)


CHOICES: dict[str, tuple[str, ...]] = {
    "data.normalize": ("per-channel", "none"),
    "train.precision": ("auto", "fp32", "bf16", "fp16"),
    "train.channels_last": ("auto", "on", "off"),
    "train.compile_mode": (
        "default",
        "reduce-overhead",
        "max-autotune",
        "max-autotune-no-cudagraphs",
    ),
    "train.early_stopping.metric": ("val_loss", "val_acc"),
    "train.ema.bn": ("average", "copy"),
    "train.snapshots": ("off", "on", "cycles", "epochs"),
}


def _plain(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


# --------------------------------------------------------------------------- building


def build_config(base: Mapping[str, Any] | None = None, overrides: Iterable[str] = ()) -> RunConfig:
    """Defaults < ``base`` (a nested mapping, e.g. parsed YAML) < ``overrides`` (``a.b=v``)."""
    tree = _merge({}, dict(base or {}))
    for item in overrides:
        key, value = parse_override(item)
        _set_path(tree, key, value)
    cfg = _to_dataclass(RunConfig, tree, prefix="")
    validate(cfg)
    return cfg


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> RunConfig:
    """Read a YAML recipe (if given), apply ``--set`` overrides, validate."""
    base: dict[str, Any] = {}
    if path is not None:
        base = read_yaml(path)
    try:
        return build_config(base, overrides)
    except ConfigError as err:
        where = f"{path}: " if path is not None else ""
        raise ConfigError(f"{where}{err}") from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: expected a mapping at the top level, found {type(data).__name__}"
        )
    return data


def dump_config(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def parse_override(item: str) -> tuple[str, Any]:
    """``"optim.lr=0.01"`` -> ``("optim.lr", 0.01)``; the value is read as a YAML scalar."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected section.key=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {item!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key, value


def merge_trees(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge of two config trees (``top`` wins, mappings merge key by key); a new tree,
    neither input is changed. The one layering rule of recipes, presets and experiments."""
    return _merge(copy.deepcopy(dict(base)), copy.deepcopy(dict(top)))


def _merge(dst: dict[str, Any], src: Mapping[str, Any]) -> dict[str, Any]:
    for k, v in src.items():
        if isinstance(v, Mapping) and isinstance(dst.get(k), dict):
            _merge(dst[k], v)
        else:
            dst[k] = _merge({}, v) if isinstance(v, Mapping) else v
    return dst


def _set_path(tree: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def _to_dataclass(cls: type, tree: Mapping[str, Any], prefix: str) -> Any:
    if not isinstance(tree, Mapping):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, found {tree!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = [k for k in tree if k not in fields]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(str(key), list(fields), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(
            f"unknown key '{prefix}{key}'{hint}; valid keys in "
            f"{prefix.rstrip('.') or 'the top level'}: {', '.join(fields)}"
        )
    kwargs = {}
    for name, value in tree.items():
        kwargs[name] = _coerce(hints[name], value, f"{prefix}{name}")
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; convert only lossless cases."""
    if dataclasses.is_dataclass(tp):
        return _to_dataclass(tp, value if value is not None else {}, key + ".")
    origin = typing.get_origin(tp)
    if origin is list:
        if value is None:
            return []
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, found {value!r}")
        return list(value)
    if is_union(tp):
        return coerce_union(tp, value, key, _coerce)
    if origin is Mapping or tp is Mapping:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping of options, found {value!r}")
        return dict(value)
    return coerce_scalar(tp, value, key)


# --------------------------------------------------------------------------- validation


def _check(cond: bool, key: str, expected: str, value: Any) -> None:
    if not cond:
        raise ConfigError(f"{key}: expected {expected}, found {value!r}")


def validate(cfg: RunConfig) -> None:
    """Range checks, enumerations and component names/options (via the registries)."""
    d, t, o = cfg.data, cfg.train, cfg.optim
    _check(d.batch_size >= 1, "data.batch_size", ">= 1", d.batch_size)
    _check(d.eval_batch_size >= 1, "data.eval_batch_size", ">= 1", d.eval_batch_size)
    _check(0.0 <= d.val_split < 1.0, "data.val_split", "a fraction in [0, 1)", d.val_split)
    _check(t.epochs >= 1, "train.epochs", ">= 1", t.epochs)
    _check(t.eval_every >= 1, "train.eval_every", ">= 1", t.eval_every)
    _check(t.checkpoint_every >= 0, "train.checkpoint_every", ">= 0", t.checkpoint_every)
    _check(t.checkpoint_steps >= 0, "train.checkpoint_steps", ">= 0", t.checkpoint_steps)
    _check(t.threads is None or t.threads >= 1, "train.threads", ">= 1", t.threads)
    _check(t.grad_clip is None or t.grad_clip > 0, "train.grad_clip", "> 0", t.grad_clip)
    _check(o.lr > 0, "optim.lr", "a learning rate > 0", o.lr)
    _check(o.weight_decay >= 0, "optim.weight_decay", ">= 0", o.weight_decay)
    _check(
        cfg.schedule.warmup_epochs >= 0,
        "schedule.warmup_epochs",
        ">= 0",
        cfg.schedule.warmup_epochs,
    )
    for key, choices in CHOICES.items():
        value: Any = cfg
        for part in key.split("."):
            value = getattr(value, part)
        _check(value in choices, key, f"one of {', '.join(choices)}", value)
    _validate_practice(cfg)
    _check_write_paths(cfg.to_dict())
    dev = t.device
    _check(
        dev in ("auto", "cpu") or dev.startswith("cuda"),
        "train.device",
        "auto, cpu, cuda or cuda:N",
        dev,
    )
    _validate_components(cfg)


def _validate_practice(cfg: RunConfig) -> None:
    """Regularisation, early stopping and fine-tuning values (handbook ch. 10-11)."""
    r, es, ft = cfg.regularization, cfg.train.early_stopping, cfg.finetune
    _check(r.l1 >= 0, "regularization.l1", ">= 0", r.l1)
    _check(r.l2 >= 0, "regularization.l2", ">= 0", r.l2)
    _check(r.max_norm is None or r.max_norm > 0, "regularization.max_norm", "> 0", r.max_norm)
    _check(es.patience >= 1, "train.early_stopping.patience", ">= 1", es.patience)
    _check(es.min_delta >= 0, "train.early_stopping.min_delta", ">= 0", es.min_delta)
    ema = cfg.train.ema
    _check(0 <= ema.decay < 1, "train.ema.decay", "a number in [0, 1)", ema.decay)
    _check(ema.every >= 1, "train.ema.every", ">= 1", ema.every)
    if es.enabled and cfg.data.val_split <= 0:
        raise ConfigError(
            "train.early_stopping needs a validation split: set data.val_split (e.g. 0.1); "
            "stopping on the test set would leak it into model selection"
        )
    if cfg.train.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise ConfigError(
            "train.tensorboard: the tensorboard package is not installed "
            "(pip install 'cnnlab[tensorboard]')"
        )
    if cfg.train.snapshots in ("on", "cycles") and cfg.schedule.name != "cosine_restarts":
        raise ConfigError(
            f"train.snapshots={cfg.train.snapshots!r} saves at the restarts of the cyclic "
            "schedule: set schedule.name: cosine_restarts, or use train.snapshots: epochs"
        )
    _check(ft.freeze_stages >= 0, "finetune.freeze_stages", ">= 0", ft.freeze_stages)
    _check(ft.stage_lr_decay > 0, "finetune.stage_lr_decay", "> 0", ft.stage_lr_decay)
    _check(ft.head_lr_mult > 0, "finetune.head_lr_mult", "> 0", ft.head_lr_mult)
    if ft.checkpoint is not None and not _checkpoint_file(ft.checkpoint).is_file():
        raise ConfigError(f"finetune.checkpoint: no checkpoint at {ft.checkpoint}")


# Config options that name a place to WRITE. cnnlab writes only into the run directory
# (--out) and its per-user cache; such an option may only name a relative path that stays
# below where it is resolved, never an absolute path or one that climbs out with "..".
WRITE_KEYS = frozenset({"cache_dir", "out", "output", "save_dir", "log_dir"})


def _check_write_paths(tree: Any, prefix: str = "") -> None:
    items = tree.items() if isinstance(tree, Mapping) else []
    for key, value in items:
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            _check_write_paths(value, name + ".")
        elif key in WRITE_KEYS and isinstance(value, str):
            p = Path(value)
            if p.is_absolute() or ".." in p.parts:
                raise ConfigError(
                    f"{name}: {value!r} would write outside the run directory; give a relative "
                    "path without '..'"
                )


def _checkpoint_file(path: str) -> Path:
    p = Path(path)
    return p / RunDir.CHECKPOINT if p.is_dir() else p


def _validate_components(cfg: RunConfig) -> None:
    # Imported here (downward, same floor): the registries and torch load only when a config
    # is checked, so that `cnnlab --help` and `import cnnlab.config` stay fast.
    from cnnlab.components import (
        check_component,
        check_data_practice,
        check_practice_components,
    )

    check_component("dataset", cfg.data.dataset, cfg.data.params, "data")
    check_data_practice(cfg.data)
    check_component("model", cfg.model.name, cfg.model.params, "model")
    check_component("loss", cfg.loss.name, cfg.loss.params, "loss")
    check_component("optimizer", cfg.optim.name, cfg.optim.params, "optim")
    check_component("schedule", cfg.schedule.name, cfg.schedule.params, "schedule")
    check_practice_components(cfg)
