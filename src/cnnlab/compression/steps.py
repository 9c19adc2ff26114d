"""Compression steps: "model in, model out, plus a report", chained from a config.

How to add one: docs/architecture.md.

``COMPRESSION`` maps a step name to a builder; the builder takes the step's options as keyword
arguments, checks them (bad values fail before any data is read) and returns a :class:`Step`.
``Step.run(state, ctx)`` transforms the :class:`CompressState` in place and returns a
JSON-able dict of details for the report.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cnnlab.compression.state import CompressionError, CompressState
from cnnlab.registry import Registry, RegistryError

COMPRESSION = Registry("compression")

Apply = Callable[[CompressState, Any], dict[str, Any]]


@dataclass
class Step:
    """One configured compression step."""

    name: str
    options: dict[str, Any]  # every option, defaults included
    apply: Apply = field(repr=False)
    given: dict[str, Any] = field(default_factory=dict)  # the options the config set

    def run(self, state: CompressState, ctx: Any) -> dict[str, Any]:
        state.require_float(self.name)  # nothing follows int8: it is the last step
        details = self.apply(state, ctx) or {}
        dropped = state.sync_encodings()
        if dropped:
            details["encodings_dropped"] = dropped
        return details

    @property
    def label(self) -> str:
        """A short description for report tables, e.g. ``kmeans(bits=4)``."""
        opts = ", ".join(f"{k}={v}" for k, v in self.given.items())
        return f"{self.name}({opts})" if opts else self.name


def build_step(spec: Mapping[str, Any], where: str = "step") -> Step:
    """A Step from ``{name: ..., **options}``; unknown names/options name the valid ones."""
    if not isinstance(spec, Mapping) or "name" not in spec:
        raise CompressionError(f"{where}: expected a mapping with a 'name' key, found {spec!r}")
    options = {k: v for k, v in spec.items() if k != "name"}
    name = spec["name"]
    try:
        step = COMPRESSION.build(name, **options)
    except RegistryError as err:
        raise CompressionError(f"{where}: {err}") from None
    except (ValueError, TypeError) as err:
        raise CompressionError(f"{where} ({name}): {err}") from None
    step.given = options
    return step


# ---------------------------------------------------------------- option checks


def check_fraction(option: str, value: Any, *, low_open: bool = True) -> float:
    """A number in (0, 1) (or [0, 1) with ``low_open=False``)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not (0 < value < 1 if low_open else 0 <= value < 1):
        bound = "(0, 1)" if low_open else "[0, 1)"
        raise ValueError(f"{option} must be a number in {bound}, got {value!r}")
    return float(value)


def check_int(option: str, value: Any, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{option} must be an integer >= {minimum}, got {value!r}")
    return value


def check_positive(option: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"{option} must be a positive number, got {value!r}")
    return float(value)


def check_choice(option: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{option} must be one of {', '.join(choices)}; got {value!r}")
    return value


# ---------------------------------------------------------------- generic steps


@COMPRESSION.register("finetune")
def finetune(*, epochs: int = 1) -> Step:
    """Fine-tune the current model, keeping its sparsity, codebooks and binary weights."""
    epochs = check_int("epochs", epochs, 1)

    def apply(state: CompressState, ctx: Any) -> dict[str, Any]:
        history = ctx.finetune(state, epochs)
        return {"epochs": epochs, "finetune_test_acc": [r.get("test_acc") for r in history]}

    return Step("finetune", {"epochs": epochs}, apply)
