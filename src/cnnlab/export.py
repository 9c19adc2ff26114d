"""Export a trained run to ONNX, verified against onnxruntime when it is installed.

The ONNX file carries what a program needs to use it without cnnlab or torch, in its
``metadata_props`` (``cnnlab.*`` keys, JSON values; :func:`onnx_metadata`): the class names in
output order, the input size, channel mode (``L`` / ``RGB``), resize rule (``fit``), the
background transparent pixels are composited on, and the per-channel normalisation
``(pixels / 255 - mean) / std``. Preprocessing fitted on the training split (mean image,
PCA/ZCA whitening) is part of the graph, so the input is always the normalised image.
``examples/onnx_predict.py`` classifies an image with onnxruntime, Pillow and NumPy alone.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from cnnlab.trained.run import load


class ExportError(RuntimeError):
    """The export could not be made or did not reproduce the model's outputs."""


def export_onnx(
    run: str | Path, out: str | Path | None = None, *, opset: int = 18, check: bool = True,
    atol: float = 1e-4,
) -> dict[str, Any]:  # fmt: skip
    """Write the run's model as ONNX (dynamic batch size); compare with onnxruntime."""
    try:
        import onnx  # noqa: F401  (the exporter needs it)
    except ImportError:
        raise ExportError(
            "ONNX export needs the onnx package: pip install 'cnnlab[export]' "
            "(onnx, onnxscript, onnxruntime)"
        ) from None
    trained = load(run, device="cpu")
    spec = trained.spec
    model = with_preprocessing(trained.fresh_model(), trained.transform)
    out = Path(out) if out is not None else trained.path / "model.onnx"
    x = torch.randn(2, spec["in_chans"], spec["input_size"], spec["input_size"])
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        _export(model, x, tmp, opset)
        _add_metadata(tmp, onnx_metadata(trained))
        result = {"path": str(out), "opset": opset, "verified": False}
        if check:
            result.update(_verify(model, tmp, spec, atol))
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return result


class _Preprocessed(torch.nn.Module):
    """The run's fitted preprocessing (after normalisation), then its network."""

    def __init__(self, transform: Any, model: torch.nn.Module) -> None:
        super().__init__()
        self.transform, self.model = transform, model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.transform(x))


def with_preprocessing(model: torch.nn.Module, transform: Any) -> torch.nn.Module:
    """``model`` with the run's fitted preprocessing steps in front, when it has any."""
    return _Preprocessed(transform, model).eval() if len(transform) else model


def onnx_metadata(trained: Any) -> dict[str, str]:
    """The ``cnnlab.*`` metadata of the module docstring, as ONNX string properties."""
    from cnnlab import __version__
    from cnnlab.data.images import background_level

    data = trained.data
    background = background_level(data.background)
    values = {
        "classes": list(data.classes), "input_size": data.input_size, "in_chans": data.in_chans,
        "mode": data.mode, "fit": data.fit, "background": background, "mean": list(data.mean),
        "std": list(data.std), "input": "float32 (N, C, H, W) = (pixels / 255 - mean) / std",
        "output": "logits (N, classes): softmax gives the class probabilities",
        "preprocess_in_graph": [type(s).__name__ for s in trained.transform.steps],
        "model": trained.spec["name"], "dataset": data.dataset, "version": __version__,
    }  # fmt: skip
    return {f"cnnlab.{k}": v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}


def _add_metadata(path: Path, meta: dict[str, str]) -> None:
    import onnx

    proto = onnx.load(str(path))
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))


def _export(model: torch.nn.Module, x: torch.Tensor, path: Path, opset: int) -> None:
    batch = torch.export.Dim("batch", min=1)
    try:
        torch.onnx.export(
            model, (x,), str(path), input_names=["images"], output_names=["logits"],
            opset_version=opset, dynamo=True, dynamic_shapes={"x": {0: batch}},
        )  # fmt: skip
    except Exception as err:  # pragma: no cover - depends on the installed exporter
        raise ExportError(f"torch.onnx.export failed: {err}") from None


def _verify(model: torch.nn.Module, path: Path, spec: dict, atol: float) -> dict[str, Any]:
    try:
        import onnxruntime as ort
    except ImportError:
        return {"verified": False, "note": "onnxruntime not installed: outputs not compared"}
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(5, spec["in_chans"], spec["input_size"], spec["input_size"], generator=gen)
    with torch.no_grad():
        want = model(x).numpy()
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    diff = float(abs(want - got).max())
    if diff > atol:
        raise ExportError(f"ONNX outputs differ from torch by {diff:.2e} (> {atol:g})")
    return {"verified": True, "max_abs_diff": diff}
