"""Preprocessing fitted on the training split only: mean image, PCA and ZCA whitening (Ch. 6).

Handbook §6: split first, compute statistics on the training images alone, then apply the same
transform to every split. Each preprocessor has ``fit(train_images)`` (uint8 images are divided
by 255; float images are used as they are) and ``__call__(x)`` on a float batch (B, C, H, W) on
any device. Per-channel mean/std is ``cnnlab.data.loader.Normalizer``; the steps here run after
it, so :func:`build_preprocess` fits them on the normalised training images, the very values
the loader produces, and returns a transform for ``BatchLoader(transform=...)``.

Whitening (an extension, handbook E.3 item 30): with X the zero-centred training data (N, D),
``Sigma = X^T X / N = U diag(lam) U^T``; PCA whitening maps x to ``x U (lam + eps)^-1/2`` and
ZCA whitening to ``x U (lam + eps)^-1/2 U^T``. The (D, D) covariance is accumulated in float64
chunks, so N x D never has to be held in float: 784-d (28x28) and 3072-d (32x32x3) are fine.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from cnnlab.registry import Registry, RegistryError

__all__ = [
    "PREPROCESSORS",
    "MeanImage",
    "PCAWhitening",
    "Pipeline",
    "ZCAWhitening",
    "build_preprocess",
    "preprocess_tensors",
    "restore_preprocess",
    "validate_preprocess",
]

PREPROCESSORS = Registry("preprocess")
Prepare = Callable[[torch.Tensor], torch.Tensor]
_CHUNK = 2048


def _as_float(chunk: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> [0, 1] float; float input is used as it is."""
    if chunk.dtype == torch.uint8:
        return chunk.to(torch.float32) / 255
    return chunk.to(torch.float32)


def _chunks(images: torch.Tensor, prepare: Prepare | None) -> Any:
    """Float64 CPU chunks (n, C, H, W) of the training images, after ``prepare``."""
    if images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(f"fit: expected training images (N, C, H, W), got {tuple(images.shape)}")
    for start in range(0, images.shape[0], _CHUNK):
        part = images[start : start + _CHUNK]
        part = prepare(part) if prepare is not None else _as_float(part)
        yield part.to("cpu", torch.float64)


class _Fitted:
    """Shared behaviour: refuse to transform before ``fit``; move parameters to the device."""

    _names: tuple[str, ...] = ()

    def _param(self, key: str, x: torch.Tensor) -> torch.Tensor:
        value = getattr(self, key, None)
        if value is None:
            raise RuntimeError(f"{type(self).__name__}: call fit(train_images) first")
        # Keep one copy per (device, dtype): a 3072x3072 matrix is not re-sent every batch.
        cache = self.__dict__.setdefault("_moved", {})
        slot = (key, x.device, x.dtype)
        if slot not in cache or cache[slot][0] is not value:
            cache[slot] = (value, value.to(x.device, x.dtype))
        return cache[slot][1]

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The fitted tensors (for saving next to a checkpoint)."""
        return {k: getattr(self, k) for k in self._names if getattr(self, k) is not None}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> _Fitted:
        """Put back fitted tensors saved by ``state_dict`` (a missing one names itself)."""
        missing = [k for k in self._names if k not in state]
        if missing:
            raise ValueError(f"{type(self).__name__}: saved state lacks {', '.join(missing)}")
        for k in self._names:
            setattr(self, k, state[k])
        return self


class MeanImage(_Fitted):
    """Subtract the training split's mean image, pixel by pixel (handbook §6).

    A batch of another spatial size gets the mean image resized to it (bilinear), like the
    book's ``imresize(averageImage, [224 224])``.
    """

    _names = ("mean",)

    def __init__(self) -> None:
        self.mean: torch.Tensor | None = None  # (C, H, W) float32

    def fit(self, images: torch.Tensor, prepare: Prepare | None = None) -> MeanImage:
        total, count = None, 0
        for part in _chunks(images, prepare):
            total = part.sum(0) if total is None else total + part.sum(0)
            count += part.shape[0]
        assert total is not None
        self.mean = (total / count).float()
        return self

    def __call__(self, x: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        mean = self._param("mean", x)
        if mean.shape[0] != x.shape[1]:
            raise ValueError(
                f"MeanImage: fitted on {mean.shape[0]} channels, batch has {x.shape[1]}"
            )
        if mean.shape[1:] != x.shape[2:]:
            mean = F.interpolate(
                mean[None], size=x.shape[2:], mode="bilinear", align_corners=False
            )[0]
        return x - mean


class _Whitening(_Fitted):
    """Shared fit for PCA/ZCA: mean (D,) and the (D, D) matrix ``W`` with x -> (x - mean) W."""

    _names = ("mean", "matrix", "eigvals")
    zca = False

    def __init__(self, eps: float = 1e-5) -> None:
        if not (isinstance(eps, (int, float)) and eps >= 0):
            raise ValueError(f"{type(self).__name__}: eps must be a number >= 0, got {eps!r}")
        self.eps = float(eps)
        self.mean: torch.Tensor | None = None
        self.matrix: torch.Tensor | None = None
        self.eigvals: torch.Tensor | None = None  # descending, float64

    def fit(self, images: torch.Tensor, prepare: Prepare | None = None) -> _Whitening:
        # Two passes over the chunks: the mean, then the centred scatter X^T X (float64).
        total, count = None, 0
        for part in _chunks(images, prepare):
            flat = part.flatten(1)  # (n, C, H, W) -> (n, D)
            total = flat.sum(0) if total is None else total + flat.sum(0)
            count += flat.shape[0]
        assert total is not None
        mean = total / count
        scatter = torch.zeros(mean.numel(), mean.numel(), dtype=torch.float64)
        for part in _chunks(images, prepare):
            centred = part.flatten(1) - mean
            scatter.addmm_(centred.T, centred)
        lam, u = torch.linalg.eigh(scatter / count)  # ascending
        lam, u = lam.flip(0).clamp_min(0), u.flip(1)  # descending: component 1 first
        matrix = u * (lam + self.eps).rsqrt()  # U diag((lam + eps)^-1/2), column scaling
        if self.zca:
            matrix = matrix @ u.T
        self.mean, self.matrix, self.eigvals = mean.float(), matrix.float(), lam
        return self

    def __call__(self, x: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        mean, matrix = self._param("mean", x), self._param("matrix", x)
        flat = x.flatten(1)  # (B, C, H, W) -> (B, D)
        if flat.shape[1] != mean.numel():
            raise ValueError(
                f"{type(self).__name__}: fitted on {mean.numel()} values per image, batch has "
                f"{flat.shape[1]} ({tuple(x.shape[1:])})"
            )
        return ((flat - mean) @ matrix).view_as(x)


class PCAWhitening(_Whitening):
    """PCA whitening: decorrelate and scale to unit variance; output k = k-th principal component.

    The output keeps the (C, H, W) shape, but its values are component scores in decreasing
    order of variance, not pixels (extension, handbook E.3 item 30).
    """


class ZCAWhitening(_Whitening):
    """ZCA whitening: PCA whitening rotated back, so images stay image-like (symmetric W)."""

    zca = True


@PREPROCESSORS.register("mean_image")
def _build_mean_image() -> MeanImage:
    """Subtract the training mean image (handbook §6)."""
    return MeanImage()


def _check_eps(name: str, eps: Any) -> float:
    if not (isinstance(eps, (int, float)) and not isinstance(eps, bool) and eps >= 0):
        raise RegistryError(f"preprocess {name!r}: eps must be a number >= 0, got {eps!r}")
    return float(eps)


@PREPROCESSORS.register("pca_whitening")
def _build_pca(*, eps: float = 1e-5) -> PCAWhitening:
    """PCA whitening with epsilon (extension, handbook E.3 item 30)."""
    return PCAWhitening(_check_eps("pca_whitening", eps))


@PREPROCESSORS.register("zca_whitening")
def _build_zca(*, eps: float = 1e-5) -> ZCAWhitening:
    """ZCA whitening with epsilon (extension, handbook E.3 item 30)."""
    return ZCAWhitening(_check_eps("zca_whitening", eps))


class Pipeline:
    """Fitted preprocessing steps in order, usable as ``BatchLoader(transform=...)``."""

    def __init__(self, steps: Sequence[Any]) -> None:
        self.steps = list(steps)

    def __call__(self, x: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        for step in self.steps:
            x = step(x)
        return x

    def __len__(self) -> int:
        return len(self.steps)

    def __repr__(self) -> str:
        return f"Pipeline([{', '.join(type(s).__name__ for s in self.steps)}])"


def _unfitted(specs: Sequence[Any] | None) -> list[Any]:
    """The steps named in ``specs``, built but not fitted (RegistryError on bad specs)."""
    if not specs:
        return []
    if isinstance(specs, (str, Mapping)) or not isinstance(specs, Sequence):
        raise RegistryError(f"preprocess: expected a list of steps, found {specs!r}")
    steps = []
    for i, spec in enumerate(specs):
        if isinstance(spec, str):
            name, options = spec, {}
        elif isinstance(spec, Mapping) and isinstance(spec.get("name"), str):
            name, options = spec["name"], {k: v for k, v in spec.items() if k != "name"}
        else:
            raise RegistryError(
                f"preprocess step #{i + 1}: expected a name or a mapping with 'name', "
                f"found {spec!r}"
            )
        steps.append(PREPROCESSORS.build(name, **options))
    return steps


def validate_preprocess(specs: Sequence[Any] | None) -> None:
    """Check preprocessing step names and options without data (for config loading)."""
    _unfitted(specs)


def build_preprocess(
    specs: Sequence[Any] | None,
    train_images: torch.Tensor,
    *,
    normalizer: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Pipeline:
    """Fit the steps in ``specs`` on the training images only and chain them.

    ``specs`` is a list of names or ``{"name": ..., **options}`` (e.g. ``["mean_image"]`` or
    ``[{"name": "zca_whitening", "eps": 0.1}]``). ``normalizer`` is the loader's
    ``Normalizer`` (uint8 -> normalised float); each step is fitted on the training images
    as the loader presents them, passed through the steps before it.
    """
    steps: list[Any] = []
    for step in _unfitted(specs):
        done = Pipeline(list(steps))

        def prepare(chunk: torch.Tensor, done: Pipeline = done) -> torch.Tensor:
            x = (
                normalizer(chunk)
                if normalizer is not None and chunk.dtype == torch.uint8
                else _as_float(chunk)
            )
            return done(x)

        steps.append(step.fit(train_images, prepare))
    return Pipeline(steps)


def preprocess_tensors(pipeline: Pipeline, prefix: str = "preprocess.") -> dict[str, torch.Tensor]:
    """The fitted tensors of every step, keyed ``{prefix}{i}.{name}`` (saved in checkpoints, so
    a trained run applies its preprocessing without the training set)."""
    return {
        f"{prefix}{i}.{name}": value.detach().cpu().contiguous()
        for i, step in enumerate(pipeline.steps)
        for name, value in step.state_dict().items()
    }


def restore_preprocess(
    specs: Sequence[Any] | None, tensors: Mapping[str, torch.Tensor], prefix: str = "preprocess."
) -> Pipeline:
    """The fitted pipeline of ``specs`` from tensors saved by :func:`preprocess_tensors`."""
    steps = _unfitted(specs)
    for i, step in enumerate(steps):
        key = f"{prefix}{i}."
        state = {k[len(key) :]: v for k, v in tensors.items() if k.startswith(key)}
        if not state:
            raise ValueError(
                f"preprocess step #{i + 1} ({type(step).__name__}): its fitted tensors were not "
                "saved with the run (trained by an older cnnlab: train it again)"
            )
        step.load_state_dict(state)
    return Pipeline(steps)
