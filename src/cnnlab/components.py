"""Config-time checks of component names and options, against the registries.

A config names components (a model, a loss, an optimiser, ...) and gives them options. Before
any data is read, each option is checked three ways: the builder must take it (signature), its
value must have the annotated type, and — for components that are cheap to build — the builder
is run once on dummy inputs so that its own range checks fire (a negative momentum, m < 1, ...).
Models are built on the ``meta`` device for this, which allocates nothing.
"""

from __future__ import annotations

import contextlib
import typing
from collections.abc import Mapping
from typing import Any

import torch

# The packages that fill the registries checked here, imported explicitly so that every
# component name is known before a config is checked.
import cnnlab.data
import cnnlab.losses
import cnnlab.models
import cnnlab.optim.optimizers
import cnnlab.optim.schedules  # noqa: F401
from cnnlab.coercion import coerce_simple, is_union
from cnnlab.data.augment import validate_augmentation
from cnnlab.data.imbalance import make_imbalanced
from cnnlab.data.preprocess import validate_preprocess
from cnnlab.data.samplers import validate_sampler
from cnnlab.engine.mix_tasks import MIX_TASKS
from cnnlab.errors import ConfigError
from cnnlab.nn.init import resolve_scheme
from cnnlab.registry import DATASETS, LOSSES, MODELS, OPTIMIZERS, SCHEDULES, Registry, RegistryError

REGISTRIES: dict[str, Registry] = {
    "dataset": DATASETS,
    "model": MODELS,
    "loss": LOSSES,
    "optimizer": OPTIMIZERS,
    "schedule": SCHEDULES,
}


# Arguments cnnlab supplies itself (from the data or the training loop); configs may not set them.
RESERVED: dict[str, frozenset[str]] = {
    "dataset": frozenset({"data_dir", "allow_sample"}),
    "model": frozenset({"num_classes", "in_chans", "input_size"}),
    "loss": frozenset({"num_classes", "class_counts"}),
    "optimizer": frozenset({"params", "lr", "weight_decay"}),
    "schedule": frozenset({"total_steps", "steps_per_epoch"}),
}


def check_component(kind: str, name: str, params: Mapping[str, Any], section: str) -> None:
    """Raise ConfigError if ``name`` is unknown or ``params`` do not fit its builder."""
    registry = REGISTRIES[kind]
    try:
        builder = registry.get(name)
    except RegistryError as err:
        key = "dataset" if section == "data" else "name"
        raise ConfigError(f"{section}.{key}: {err}") from None
    reserved = sorted(RESERVED[kind] & set(params))
    if reserved:
        raise ConfigError(
            f"{section}.params: {', '.join(reserved)} cannot be set in a config "
            f"(cnnlab derives {'it' if len(reserved) == 1 else 'them'} from the data or the run)"
        )
    accepted = {k: p for k, p in registry.parameters(name).items() if k not in RESERVED[kind]}
    hints = _type_hints(builder)
    for key, value in params.items():
        if key not in accepted and not registry.accepts_any(name):
            raise ConfigError(
                f"{section}.params.{key}: {kind} {name!r} has no option {key!r}; "
                f"valid options: {', '.join(accepted) or '(none)'}"
            )
        if key in hints:
            coerce_simple(hints[key], value, f"{section}.params.{key}")
    try:
        _dry_build(kind, name, dict(params))
    except (ValueError, TypeError, KeyError) as err:
        raise ConfigError(f"{section}.params: {kind} {name!r}: {err}") from None


def _type_hints(fn: Any) -> dict[str, Any]:
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # unresolvable annotations: skip type checks, keep name checks
        return {}
    hints.pop("return", None)
    # Only simple annotations are checked; anything exotic is left to the builder itself.
    simple = (bool, int, float, str, type(None))
    return {k: v for k, v in hints.items() if _is_simple(v, simple)}


def _is_simple(tp: Any, simple: tuple[type, ...]) -> bool:
    args = typing.get_args(tp)
    if args and typing.get_origin(tp) is not None and not is_union(tp):
        return False
    return all(a in simple for a in args) if args else tp in simple


def _dry_build(kind: str, name: str, params: dict[str, Any]) -> None:
    """Build cheaply once so the builder's own value checks run at config time."""
    registry = REGISTRIES[kind]
    if kind == "model":
        # NotImplementedError: an initialiser that cannot run on meta tensors.
        with torch.device("meta"), contextlib.suppress(NotImplementedError):
            registry.build(name, num_classes=10, in_chans=3, **params)
    elif kind == "loss":
        registry.build(name, num_classes=10, **params)
    elif kind == "optimizer":
        dummy = [torch.nn.Parameter(torch.zeros(2))]
        registry.build(name, params=dummy, lr=1e-3, weight_decay=0.0, **params)
    elif kind == "schedule":
        factor = registry.build(name, total_steps=100, steps_per_epoch=10, **params)
        factor(0)


def check_data_practice(data: Any) -> None:
    """Augmentation, preprocessing, sampler and imbalance specs, checked without any data."""
    checks = [
        ("data.augment", lambda: validate_augmentation(data.augment)),
        ("data.preprocess", lambda: validate_preprocess(data.preprocess)),
        ("data.sampler", lambda: validate_sampler(data.sampler)),
    ]
    if data.imbalance is not None:
        labels = torch.arange(10).repeat(10)
        images = torch.zeros(100, 1, 1, 1, dtype=torch.uint8)
        checks.append(
            ("data.imbalance", lambda: make_imbalanced(images, labels, **dict(data.imbalance)))
        )
    for key, check in checks:
        try:
            check()
        except (RegistryError, ValueError, TypeError) as err:
            raise ConfigError(f"{key}: {err}") from None


def check_practice_components(cfg: Any) -> None:
    """The model's init scheme and the loss's mix task (checked without data)."""
    if cfg.model.init is not None and cfg.model.init != "lsuv":
        try:
            resolve_scheme(cfg.model.init)
        except (RegistryError, ValueError, TypeError) as err:
            raise ConfigError(f"model.init: {err}") from None
    mix = cfg.loss.mix
    if mix is None:
        return
    options = dict(mix)
    name = options.pop("name", None)
    if name not in MIX_TASKS:
        raise ConfigError(f"loss.mix.name: expected one of {', '.join(MIX_TASKS)}, found {name!r}")
    if cfg.loss.name in ("center", "l_softmax"):
        raise ConfigError(
            f"loss.mix: {name} mixes the losses of two labels and works with plain losses, "
            f"not with {cfg.loss.name!r} (which needs the features of single images)"
        )
    try:
        MIX_TASKS[name](torch.nn.CrossEntropyLoss(), **options)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"loss.mix: {err}") from None
