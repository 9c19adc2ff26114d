"""Config values checked against their annotated types (config sections, component options).

Shared by ``cnnlab.config`` (the sections) and ``cnnlab.components`` (builder options); every
failure is a ``ConfigError`` naming the key, what was expected and what was found.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from typing import Any, Union

from cnnlab.errors import ConfigError


def coerce_simple(tp: Any, value: Any, key: str) -> Any:
    """``value`` against a scalar annotation or a union of scalars (``float | None``)."""
    if is_union(tp):
        return coerce_union(tp, value, key, coerce_simple)
    return coerce_scalar(tp, value, key)


def is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


def coerce_union(tp: Any, value: Any, key: str, coerce: Callable[[Any, Any, str], Any]) -> Any:
    """The first member of the union ``tp`` that ``coerce`` accepts ``value`` as (None for an
    optional one); else the first member's error."""
    args = typing.get_args(tp)
    if value is None and type(None) in args:
        return None
    errors = []
    for arg in args:
        if arg is type(None):
            continue
        try:
            return coerce(arg, value, key)
        except ConfigError as err:
            errors.append(str(err))
    raise ConfigError(errors[0] if errors else f"{key}: invalid value {value!r}")


def coerce_scalar(tp: Any, value: Any, key: str) -> Any:
    """``value`` as the scalar type ``tp`` (bool, int, float, str), converting only lossless
    cases (an integral float to int, YAML's "1e-3" string to float, on/off to a string)."""
    found = f"found {value!r} ({type(value).__name__})"
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, {found}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{key}: expected an integer, {found}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, {found}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, bool):  # YAML reads on/off as booleans
            return "on" if value else "off"
        raise ConfigError(f"{key}: expected a string, {found}")
    raise ConfigError(f"{key}: unsupported config type {tp!r}")  # pragma: no cover
