"""Name -> builder registries.

One small class serves every family of components (models, losses, optimisers, ...). A
registry maps an explicit lowercase name to a builder callable, refuses duplicates, and turns
an unknown name into an error that lists close matches. Because builders declare their
options as keyword arguments, a registry can also validate a config's options against the
builder's signature before anything is built (so bad config fails at load time).
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class RegistryError(KeyError, ValueError):
    """Unknown name, duplicate name or bad options for a registered builder."""

    def __str__(self) -> str:  # KeyError would quote the message; show it plainly.
        return str(self.args[0]) if self.args else ""


class Registry:
    """A named collection of builders: ``@MODELS.register("resnet20")``."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, Callable[..., Any]] = {}

    def register(self, name: str) -> Callable[[F], F]:
        """Decorator registering ``fn`` under ``name`` (lowercase, unique)."""
        if name != name.lower() or not name or " " in name:
            raise RegistryError(
                f"{self.kind} name {name!r} must be lowercase, non-empty, no spaces"
            )

        def deco(fn: F) -> F:
            if name in self._items:
                raise RegistryError(f"duplicate {self.kind} name {name!r}")
            self._items[name] = fn
            return fn

        return deco

    def get(self, name: str) -> Callable[..., Any]:
        """The builder registered as ``name``; unknown names list close matches."""
        key = name.lower() if isinstance(name, str) else name
        try:
            return self._items[key]
        except KeyError:
            raise RegistryError(self._unknown_message(str(name))) from None

    def _unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name.lower(), list(self._items), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        return f"unknown {self.kind} {name!r}.{hint} Valid choices: {', '.join(self.names())}"

    def build(self, name: str, **kwargs: Any) -> Any:
        """Build ``name`` with ``kwargs`` after checking them against its signature."""
        fn = self.get(name)
        self.check_kwargs(name, kwargs)
        return fn(**kwargs)

    def parameters(self, name: str) -> dict[str, inspect.Parameter]:
        """The keyword parameters ``name``'s builder accepts (without ``**kwargs``)."""
        sig = inspect.signature(self.get(name))
        return {
            k: p
            for k, p in sig.parameters.items()
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
        }

    def accepts_any(self, name: str) -> bool:
        """True when the builder takes ``**kwargs`` (so options cannot be fully checked)."""
        sig = inspect.signature(self.get(name))
        return any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())

    def check_kwargs(self, name: str, kwargs: Mapping[str, Any]) -> None:
        """Raise if ``kwargs`` holds an option the builder does not take."""
        if self.accepts_any(name):
            return
        valid = self.parameters(name)
        unknown = [k for k in kwargs if k not in valid]
        if unknown:
            raise RegistryError(
                f"{self.kind} {name!r} has no option {', '.join(repr(u) for u in unknown)}; "
                f"valid options: {', '.join(valid) or '(none)'}"
            )

    def describe(self, name: str) -> str:
        """The first paragraph of the builder's docstring on one line (``cnnlab list``), so a
        summary wrapped over two source lines is not cut in the middle."""
        doc = inspect.getdoc(self.get(name)) or ""
        return " ".join(doc.split("\n\n")[0].split())

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self)} items)"


MODELS = Registry("model")
DATASETS = Registry("dataset")
LOSSES = Registry("loss")
OPTIMIZERS = Registry("optimizer")
SCHEDULES = Registry("schedule")
