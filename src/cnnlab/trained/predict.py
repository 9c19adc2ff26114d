"""Ask a trained run what is in new pictures: ``run.predict(x)`` -> :class:`Prediction`.

Every input goes through the run's own preprocessing, the steps its network saw in training
and evaluation, never a second copy of them: decoding by ``cnnlab.data.images`` with the run's
mode (grey or colour), resize rule (``fit``), input size and background, then the run's
per-channel normalisation (``Normalizer``) and any fitted preprocessing (mean image, PCA/ZCA
whitening: ``run.transform``), in the run's memory layout. Inference runs in batches on the
run's device, in its precision (autocast), under ``torch.inference_mode``; test-time
augmentation (handbook §13.1.1) averages the softmax over the views of
``cnnlab.evaluation.tta``, as ``cnnlab eval --tta`` does.

Accepted inputs (``x``): a path (image file, folder, glob pattern, IDX or ``.npy`` file), a list
of them, a PIL image, a NumPy array ((H, W), (H, W, C), (N, H, W), (N, C, H, W)) or a torch
tensor ((H, W), (C, H, W), (N, C, H, W)) of uint8 pixels (or floats in [0, 1]), or a list
mixing these. A file that cannot be read raises ``ImageInputError`` naming it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cnnlab.data.images import ImageInputError, array_to_batch, to_pixels
from cnnlab.evaluation.tta import PRESETS, TTA
from cnnlab.trained.inputs import Decoding, chunks, expand_inputs

__all__ = ["ImagePrediction", "Prediction", "decoding", "infer", "pixels", "predict", "preprocess"]


@dataclass(frozen=True)
class ImagePrediction:
    """One image's answer: ``labels``/``probs`` are its top-k, best first."""

    input: str
    labels: tuple[str, ...]
    probs: tuple[float, ...]

    @property
    def label(self) -> str:
        return self.labels[0]

    @property
    def prob(self) -> float:
        return self.probs[0]

    def to_dict(self) -> dict[str, Any]:
        top = [{"label": lab, "prob": p} for lab, p in zip(self.labels, self.probs, strict=True)]
        return {"input": self.input, "label": self.label, "prob": self.prob, "top_k": top}


class Prediction:
    """The answers for N images: top-k class names and probabilities per image.

    ``pred.labels`` (top-1 name per image), ``pred.indices`` (top-1 class index, (N,)),
    ``pred.top_labels`` / ``pred.top_probs`` ((N, k)), ``pred.probs`` (every class, (N, C),
    float32), ``pred.inputs`` (what each row was: a path, ``file[i]`` or ``#i``); ``pred[i]`` is
    an :class:`ImagePrediction`, ``pred.to_rows()`` plain dicts (for JSON, pandas, CSV) and
    ``print(pred)`` a short table.
    """

    def __init__(
        self, probs: torch.Tensor, classes: Sequence[str], inputs: Sequence[str], top_k: int = 5
    ) -> None:
        if probs.ndim != 2 or probs.shape[1] != len(classes) or probs.shape[0] != len(inputs):
            raise ValueError(
                f"Prediction: probs {tuple(probs.shape)} must be (N={len(inputs)}, "
                f"C={len(classes)})"
            )
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        self.probs = probs.float().cpu()
        self.classes = tuple(classes)
        self.inputs = tuple(inputs)
        self.top_k = min(top_k, len(self.classes))
        self.top_probs, self.top_indices = self.probs.topk(self.top_k, dim=1)  # (N, k) each

    @property
    def indices(self) -> torch.Tensor:
        return self.top_indices[:, 0]

    @property
    def labels(self) -> list[str]:
        return [self.classes[i] for i in self.indices.tolist()]

    @property
    def top_labels(self) -> list[list[str]]:
        return [[self.classes[i] for i in row] for row in self.top_indices.tolist()]

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, i: int) -> ImagePrediction:
        idx = self.top_indices[i].tolist()
        return ImagePrediction(self.inputs[i], tuple(self.classes[j] for j in idx),
                               tuple(self.top_probs[i].tolist()))  # fmt: skip

    def __iter__(self) -> Iterator[ImagePrediction]:
        return (self[i] for i in range(len(self)))

    def to_rows(self) -> list[dict[str, Any]]:
        return [p.to_dict() for p in self]

    def __repr__(self) -> str:
        shown = [f"  {p.input}: {p.label} ({p.prob:.1%})" for p in list(self)[:10]]
        more = [f"  ... and {len(self) - 10} more"] if len(self) > 10 else []
        return "\n".join([f"Prediction of {len(self)} image(s), top-{self.top_k}:", *shown, *more])


def decoding(run: Any) -> Decoding:
    """The run's rules for turning a file into pixels (size, mode, fit, background)."""
    data = run.data
    return Decoding(size=data.input_size, mode=data.mode, fit=data.fit, background=data.background)


def _expects(how: Decoding) -> str:
    return f"{'grey' if how.chans == 1 else 'colour'} {how.chans}x{how.size}x{how.size}"


def _one(item: Any, how: Decoding, pos: int, workers: int | None) -> tuple[np.ndarray, list[str]]:
    if isinstance(item, (str, os.PathLike)):
        return _files([item], how, workers)
    if hasattr(item, "getbands"):  # a PIL image (PIL itself stays an optional import here)
        return to_pixels(item, how.size, how.mode, how.fit, how.background)[None], [f"#{pos}"]
    if isinstance(item, (np.ndarray, torch.Tensor)):
        batch = array_to_batch(item, chans=how.chans, size=how.size, background=how.background,
                               what=f"input #{pos}")  # fmt: skip
        return batch, [f"#{pos + i}" for i in range(len(batch))]
    raise ImageInputError(
        f"input #{pos}: cannot predict a {type(item).__name__}; pass a path, a PIL image, a "
        f"NumPy array or a torch tensor of {_expects(how)} images, or a list of these"
    )


def _files(paths: list[Any], how: Decoding, workers: int | None) -> tuple[np.ndarray, list[str]]:
    units, _ = expand_inputs(paths)
    parts, names = [], []
    for chunk in chunks(units, how, batch_size=256, workers=workers):
        for name, error in zip(chunk.names, chunk.errors, strict=True):
            if error is not None:
                raise ImageInputError(f"{name}: {error}")
        parts.append(chunk.pixels)
        names += chunk.names
    return np.concatenate(parts), names


def pixels(run: Any, x: Any, *, workers: int | None = None) -> tuple[np.ndarray, list[str]]:
    """Any accepted input -> uint8 (N, C, H, W) as the run decodes images, and row names."""
    how = decoding(run)
    items = list(x) if isinstance(x, (list, tuple)) else [x]
    if items and all(isinstance(i, (str, os.PathLike)) for i in items):
        return _files(items, how, workers)  # one pool for every file
    parts, names = [], []
    for item in items:
        batch, rows = _one(item, how, len(names), workers)
        parts.append(batch)
        names += rows
    if not parts:
        raise ImageInputError("nothing to predict: the input list is empty")
    return np.concatenate(parts), names


def _prepare(run: Any, batch: torch.Tensor) -> torch.Tensor:
    """uint8 (B, C, H, W) -> what the network sees: normalised, transformed, its layout."""
    x = run.normalizer(batch.to(run.runtime.device))
    if len(run.transform):
        x = run.transform(x)
    if run.runtime.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def preprocess(run: Any, x: Any) -> torch.Tensor:
    """What the network sees for ``x``: float (N, C, H, W) on the run's device."""
    return _prepare(run, torch.from_numpy(pixels(run, x)[0]))


def _network(run: Any, tta: Any) -> torch.nn.Module:
    if tta is None:
        return run.model
    views = tta.split(",") if isinstance(tta, str) and tta not in PRESETS else tta
    return TTA(run.model, views, mean=run.data.mean, std=run.data.std)


@torch.inference_mode()
def infer(
    run: Any, images: np.ndarray | torch.Tensor, *, tta: Any = None, batch_size: int = 256
) -> torch.Tensor:
    """uint8 (N, C, H, W) pixels -> class probabilities (N, K), float32 on the CPU."""
    net = _network(run, tta)
    images = torch.from_numpy(images) if isinstance(images, np.ndarray) else images
    out = []
    for start in range(0, images.shape[0], batch_size):
        x = _prepare(run, images[start : start + batch_size])
        with run.runtime.autocast():
            logits = net(x)
        logits = logits[0] if isinstance(logits, (tuple, list)) else logits
        out.append(F.softmax(logits.float(), dim=1).cpu())  # TTA's log-mean-probs too
    n_classes = len(run.classes)
    return torch.cat(out) if out else torch.zeros(0, n_classes)


def predict(
    run: Any, x: Any, *, top_k: int = 5, tta: Any = None, batch_size: int = 256,
    workers: int | None = None,
) -> Prediction:  # fmt: skip
    """Top-k labels and probabilities for every image in ``x`` (module docstring).

    ``tta``: a preset (``flip``, ``shift``, ``flip_shift``), comma-separated view names
    (``"identity,hflip"``) or a list of views, as ``cnnlab.evaluation.tta.TTA`` takes them.
    ``workers``: processes decoding image files (default one per core)."""
    images, names = pixels(run, x, workers=workers)
    probs = infer(run, images, tta=tta, batch_size=batch_size)
    return Prediction(probs, run.classes, names, top_k)
