"""Test-time augmentation (handbook §13.1.1): average the class probabilities of n views.

``TTA(model, views)`` is an ``nn.Module`` returning ``log(mean_v softmax(model(view_v(x))))``,
the same log-probability convention as ``Ensemble`` (so ``evaluate()`` reports its NLL), and it
wraps a single model or an ``Ensemble`` alike (for an ensemble, ``softmax`` of its output is its
combined distribution). The book fixes neither n nor the crops (E.6 item 63); the views here are
deterministic:

- ``identity``, ``hflip``, ``vflip``;
- ``{"name": "shift", "dy": 2, "dx": -2}``: pad with zeros (the channel mean, since batches are
  normalised) and crop back, i.e. the image moved by (dy, dx) pixels: the test-time version of
  the padding + random-crop augmentation;
- ``{"name": "augment", "pipeline": [...], "seed": 3}``: any cnnlab batched augmentation
  pipeline (``cnnlab.data.augment``) drawn with a fixed generator seed, so every call gives the
  same view (colour ops need ``mean``/``std`` of the normaliser);
- a callable ``view(x) -> x``.

Presets (``preset_views``): ``flip`` = identity + hflip; ``shift`` = identity + 4 shifts by
``s`` pixels (up, down, left, right); ``flip_shift`` = both, 10 views.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnlab.errors import EnsembleError

View = Callable[[torch.Tensor], torch.Tensor]
PRESETS = ("flip", "shift", "flip_shift")
# The training augmentations that teach the invariance a deterministic view relies on: a
# model never shown mirrored images scores ~73% on them instead of ~94% (benchmarks/ensembles).
TAUGHT_BY = {"hflip": {"hflip"}, "vflip": {"vflip"}, "shift": {"random_crop", "translate"}}


def shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Move the batch's content by (dy, dx) pixels (down/right positive), zero-filled."""
    if dy == 0 and dx == 0:
        return x
    h, w = x.shape[-2:]
    p = max(abs(dy), abs(dx))
    padded = F.pad(x, (p, p, p, p))  # (B, C, H+2p, W+2p)
    return padded[..., p - dy : p - dy + h, p - dx : p - dx + w]


class _Named:
    """A view with a readable repr (for logs and results) and the transformations it applies
    (``kinds``, checked against the training augmentation by :func:`untaught_views`)."""

    def __init__(self, name: str, fn: View, kinds: frozenset[str] | None = frozenset()) -> None:
        self.name, self.fn, self.kinds = name, fn, kinds

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)

    def __repr__(self) -> str:
        return self.name


def make_view(spec: Any, *, mean: Sequence[float] | None = None,
              std: Sequence[float] | None = None) -> View:  # fmt: skip
    """One view from a name, a mapping (``shift``/``augment``/``hflip``...) or a callable."""
    if callable(spec):
        return spec
    name, opts = (spec, {}) if isinstance(spec, str) else _split(spec)
    if name == "identity":
        return _Named("identity", lambda x: x)
    if name in ("hflip", "vflip"):
        dim = 3 if name == "hflip" else 2
        return _Named(name, lambda x: x.flip(dim), frozenset({name}))
    if name == "shift":
        dy, dx = int(opts.get("dy", 0)), int(opts.get("dx", 0))
        return _Named(f"shift({dy},{dx})", lambda x: shift(x, dy, dx), frozenset({"shift"}))
    if name == "augment":
        return augment_view(opts.get("pipeline"), int(opts.get("seed", 0)), mean=mean, std=std)
    raise EnsembleError(
        f"unknown TTA view {spec!r}; use identity, hflip, vflip, {{name: shift, dy, dx}}, "
        "{name: augment, pipeline, seed} or a preset (flip, shift, flip_shift)"
    )


def _split(spec: Any) -> tuple[str, dict[str, Any]]:
    if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
        raise EnsembleError(f"TTA view: expected a name or a mapping with 'name', got {spec!r}")
    opts = {k: v for k, v in spec.items() if k != "name"}
    allowed = {"shift": {"dy", "dx"}, "augment": {"pipeline", "seed"}}.get(spec["name"], set())
    unknown = sorted(set(opts) - allowed)
    if unknown:
        raise EnsembleError(f"TTA view {spec['name']!r}: unknown option(s) {', '.join(unknown)}")
    return spec["name"], opts


def augment_view(pipeline: Any, seed: int, *, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None) -> View:  # fmt: skip
    """A fixed random view: a cnnlab augmentation pipeline with a generator re-seeded per call."""
    from cnnlab.data.augment import build_augmentation

    aug = build_augmentation(pipeline, mean=mean, std=std)

    def view(x: torch.Tensor) -> torch.Tensor:
        gen = torch.Generator(device=x.device).manual_seed(seed)
        return aug(x, gen)

    # kinds None: a pipeline's transformations are its own, not checked against training
    return _Named(f"augment({aug!r}, seed={seed})", view, None)


def preset_views(name: str, shift_px: int = 2) -> list[Any]:
    """View specs of a preset: ``flip``, ``shift`` or ``flip_shift`` (see module docstring)."""
    if name not in PRESETS:
        raise EnsembleError(f"unknown TTA preset {name!r}; valid presets: {', '.join(PRESETS)}")
    s = shift_px
    shifts = [
        {"name": "shift", "dy": dy, "dx": dx} for dy, dx in ((-s, 0), (s, 0), (0, -s), (0, s))
    ]
    if name == "flip":
        return ["identity", "hflip"]
    if name == "shift":
        return ["identity", *shifts]
    return ["identity", "hflip", *shifts, *[_flip_then(s) for s in shifts]]


def _flip_then(spec: Mapping[str, Any]) -> View:
    dy, dx = int(spec["dy"]), int(spec["dx"])
    kinds = frozenset({"hflip", "shift"})
    return _Named(f"hflip+shift({dy},{dx})", lambda x: shift(x.flip(3), dy, dx), kinds)


def _view_kinds(spec: Any) -> set[str] | None:
    """The transformations a view applies (None: not known, e.g. a user callable)."""
    if isinstance(spec, str):
        return {spec} - {"identity"}
    if isinstance(spec, Mapping):
        return None if spec.get("name") == "augment" else {str(spec.get("name"))}
    if isinstance(spec, _Named):
        return None if spec.kinds is None else set(spec.kinds)
    return None


def untaught_views(views: Sequence[Any], augment: Sequence[Any]) -> list[str]:
    """The view transformations (``hflip``, ``vflip``, ``shift``) that no step of a training
    augmentation pipeline teaches: §13.1.1 takes test-time views from the training
    augmentation, and a view the model never saw in training lowers the averaged accuracy."""
    trained = {a if isinstance(a, str) else a.get("name") for a in augment}
    missing: set[str] = set()
    for spec in views:
        for kind in _view_kinds(spec) or ():
            if kind in TAUGHT_BY and not TAUGHT_BY[kind] & trained:
                missing.add(kind)
    return sorted(missing)


class TTA(nn.Module):
    """Average ``softmax`` over views; output ``log`` of the mean (N, C), handbook §13.1.1."""

    def __init__(
        self,
        model: nn.Module,
        views: Sequence[Any] | str = ("identity", "hflip"),
        *,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        specs = preset_views(views) if isinstance(views, str) else list(views)
        if not specs:
            raise EnsembleError("TTA needs at least one view")
        self.model = model
        self.views = [make_view(v, mean=mean, std=std) for v in specs]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = []
        for view in self.views:
            out = self.model(view(x))
            out = out[0] if isinstance(out, (tuple, list)) else out
            outs.append(F.log_softmax(out.float(), dim=1))
        return torch.logsumexp(torch.stack(outs), dim=0) - math.log(len(outs))

    def extra_repr(self) -> str:
        return f"views={self.views!r}"
