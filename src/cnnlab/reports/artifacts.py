"""Read what a run directory holds for a report, part by part.

``metrics.json`` is required (it is what makes a directory a finished run); every other part
(history, config, environment, checkpoint weights, example images) is optional: when it is
missing or unreadable the report shows a note in its place instead of failing.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnlab.engine.checkpoint import FORMAT
from cnnlab.engine.rundir import RunDir, RunDirError
from cnnlab.models.spec import build_model
from cnnlab.viz.weights import first_conv, pixel_classifier

EXAMPLE_KEYS = ("images", "targets", "preds", "confidence", "correct")


class ReportError(RunDirError):
    """A directory a report cannot be built from (names the directory and what it lacks)."""


@dataclass(frozen=True)
class Note:
    text: str
    warn: bool = False  # True: a file was there but unreadable (not merely absent)


@dataclass
class WeightView:
    """The weights worth drawing: class templates of a pixel classifier or first-layer filters."""

    kind: str  # "templates" | "filters"
    layer: str
    weight: torch.Tensor  # (K, C*H*W) or (O, I, kh, kw)
    image_shape: tuple[int, int, int]


@dataclass
class RunData:
    path: Path
    metrics: dict[str, Any]
    classes: list[str]
    history: list[dict[str, float]] | None = None
    config_text: str | None = None
    env: dict[str, Any] | None = None
    spec: dict[str, Any] | None = None
    examples: dict[str, np.ndarray] | None = None
    weights: WeightView | None = None
    notes: dict[str, Note] = field(default_factory=dict)

    @property
    def model(self) -> str:
        return str(self.metrics.get("model") or (self.spec or {}).get("name") or "model")

    @property
    def confusion(self) -> np.ndarray | None:
        cm = (self.metrics.get("test") or {}).get("confusion")
        try:
            arr = np.asarray(cm, dtype=np.float64)
        except (TypeError, ValueError):
            return None
        ok = arr.ndim == 2 and arr.shape[0] == arr.shape[1] and arr.size > 0
        return np.nan_to_num(arr).astype(np.int64) if ok else None

    def warnings(self) -> list[str]:
        return [n.text for n in self.notes.values() if n.warn]


def read_json_object(path: Path, what: str) -> dict[str, Any]:
    """A required JSON object file, or a ReportError naming the file and the problem."""
    if not path.is_file():
        raise ReportError(f"{path.parent}: no {path.name} ({what})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ReportError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise ReportError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def load_run(run_dir: str | Path, *, weights: bool = True) -> RunData:
    """Everything a report shows about one run; only a missing/corrupt metrics.json raises."""
    path = Path(run_dir)
    if not path.is_dir():
        raise ReportError(f"{path}: not a directory")
    metrics = read_json_object(
        path / RunDir.METRICS, "not a finished cnnlab run: `cnnlab train` writes metrics.json"
    )
    run = RunData(path=path, metrics=metrics, classes=[])
    run.history = _optional(run, "history", lambda: read_history(path / RunDir.HISTORY))
    run.config_text = _optional(
        run, "config", lambda: _read_text(path / RunDir.CONFIG), what="configuration"
    )
    run.env = _optional(run, "env", lambda: _read_env(path / RunDir.ENV), what="environment")
    meta = _optional(run, "checkpoint", lambda: read_checkpoint_meta(path / RunDir.CHECKPOINT))
    if meta is not None:
        run.spec = meta.get("model")
        run.classes = [str(c) for c in (meta.get("data") or {}).get("classes") or []]
        if weights and run.spec:
            es = ((meta.get("config") or {}).get("train") or {}).get("early_stopping")
            run.weights = _optional(
                run, "weights", lambda: read_weights(path, run.spec, metrics=metrics, es=es)
            )
    run.examples = _optional(run, "examples", lambda: read_examples(path / RunDir.EXAMPLES))
    cm = run.confusion
    if cm is not None and len(run.classes) != cm.shape[0]:
        run.classes = [str(i) for i in range(cm.shape[0])]  # no (matching) names: use indices
    return run


def _optional(run: RunData, part: str, read, what: str | None = None):
    """``read()``, or None with a note: absent file -> plain note, unreadable -> warning."""
    try:
        return read()
    except FileNotFoundError as err:
        run.notes[part] = Note(f"No {what or part} to show: {err.filename or err} is missing.")
    except (ValueError, OSError, KeyError, TypeError, RuntimeError) as err:
        run.notes[part] = Note(f"Could not read the {what or part}: {err}", warn=True)
    return None


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise FileNotFoundError(2, "missing", str(path))
    return path.read_text(encoding="utf-8")


def _read_env(path: Path) -> dict[str, Any]:
    data = json.loads(_read_text(path))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return data


def read_history(path: Path) -> list[dict[str, float]]:
    """``history.csv`` as one dict of floats per epoch (blank cells become NaN)."""
    text = _read_text(path)
    rows = []
    for line, row in enumerate(csv.DictReader(text.splitlines()), start=2):
        parsed = {}
        for key, value in row.items():
            if key is None:
                raise ValueError(f"{path}, line {line}: more cells than columns")
            try:
                parsed[key] = float(value) if value not in (None, "") else math.nan
            except ValueError:
                raise ValueError(
                    f"{path}, line {line}, column {key}: {value!r} is not a number"
                ) from None
        rows.append(parsed)
    if not rows:
        raise ValueError(f"{path}: holds no epochs")
    return rows


def read_checkpoint_meta(path: Path) -> dict[str, Any]:
    """The JSON metadata of a checkpoint, read from its header only (no tensor data)."""
    from safetensors import safe_open

    if not path.is_file():
        raise FileNotFoundError(2, "missing", str(path))
    try:
        with safe_open(str(path), framework="pt") as f:
            text = (f.metadata() or {}).get("cnnlab")
    except Exception as err:  # safetensors raises its own error types for damaged headers
        raise ValueError(f"{path}: not a readable safetensors checkpoint ({err})") from None
    if text is None:
        raise ValueError(f"{path}: safetensors file without cnnlab metadata")
    meta = json.loads(text)
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: unknown format {meta.get('format')!r}, expected {FORMAT}")
    return meta


def read_weights(
    run_dir: Path, spec: dict[str, Any], *, metrics: dict[str, Any] | None = None,
    es: dict[str, Any] | None = None,
) -> WeightView | None:  # fmt: skip
    """The first conv layer's kernels, or a pixel classifier's rows, of the weights the run
    reports (``RunDir.reported_weights``, as ``cnnlab.load``); reads just that tensor."""
    from safetensors import SafetensorError, safe_open

    shape = (int(spec["in_chans"]), int(spec["input_size"]), int(spec["input_size"]))
    rd = RunDir(run_dir)
    path = rd.reported_weights(metrics, es)
    prefix = "model." if path == rd.checkpoint else ""  # best/EMA files are plain state dicts
    try:
        with safe_open(str(path), framework="pt") as f:
            shapes = {
                k[len(prefix) : -7]: tuple(f.get_slice(k).get_shape())
                for k in f.keys()  # noqa: SIM118 - safe_open has keys(), no __iter__
                if k.startswith(prefix) and k.endswith(".weight")
            }
            found = _locate_by_shape(shapes, shape, int(spec["num_classes"]))
            found = found or _locate_in_model(spec, shape)
            if found is None:
                return None
            weight = f.get_tensor(f"{prefix}{found[1]}.weight").float()
    except SafetensorError as err:  # damaged header or tensor data
        raise ValueError(f"{path}: cannot read the weights ({err})") from None
    return WeightView(kind=found[0], layer=found[1], weight=weight, image_shape=shape)


def _locate_by_shape(
    shapes: dict[str, tuple[int, ...]], image: tuple[int, int, int], num_classes: int
) -> tuple[str, str] | None:
    """``(kind, layer)`` when the tensor shapes alone leave no doubt, else None.

    Exactly one conv kernel ``(O, C, kh, kw)`` reading the image's C channels is the stem; no
    conv kernel at all and one ``(classes, C*H*W)`` matrix is a pixel classifier. Anything
    else (depthwise kernels on grey images, several candidates) needs the module order."""
    convs = [name for name, s in shapes.items() if len(s) == 4]
    stems = [name for name in convs if shapes[name][1] == image[0]]
    if len(stems) == 1:
        return "filters", stems[0]
    pixels = image[0] * image[1] * image[2]
    heads = [name for name, s in shapes.items() if s == (num_classes, pixels)]
    if not convs and len(heads) == 1:
        return "templates", heads[0]
    return None


def _locate_in_model(spec: dict[str, Any], image: tuple[int, int, int]) -> tuple[str, str] | None:
    """Rebuild the model (on the CPU) and take its first conv, or its pixel classifier."""
    model = build_model(spec)
    conv = first_conv(model)
    if conv is not None:
        return "filters", conv[0]
    head = pixel_classifier(model, image, int(spec["num_classes"]))
    return ("templates", head[0]) if head is not None else None


def read_examples(path: Path) -> dict[str, np.ndarray]:
    """``examples.safetensors`` as numpy arrays, checked for the keys and shapes reports use."""
    from safetensors.torch import load_file

    if not path.is_file():
        raise FileNotFoundError(2, "missing", str(path))
    try:
        tensors = load_file(str(path))
    except Exception as err:  # safetensors' own error types
        raise ValueError(f"{path}: not a readable safetensors file ({err})") from None
    missing = [k for k in EXAMPLE_KEYS if k not in tensors]
    if missing:
        raise ValueError(f"{path}: missing {', '.join(missing)}")
    out = {k: tensors[k].numpy() for k in EXAMPLE_KEYS}
    k = out["images"].shape[0]
    if out["images"].ndim != 4 or out["images"].dtype != np.uint8:
        raise ValueError(f"{path}: images must be uint8 (K, C, H, W), got {out['images'].shape}")
    bad = [key for key in EXAMPLE_KEYS[1:] if out[key].shape != (k,)]
    if bad:
        raise ValueError(f"{path}: {', '.join(bad)} must have shape ({k},) like the images")
    return out
