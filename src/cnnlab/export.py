"""Export a trained run to ONNX, verified against onnxruntime when it is installed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from cnnlab.engine.checkpoint import load_checkpoint


class ExportError(RuntimeError):
    """The export could not be made or did not reproduce the model's outputs."""


def export_onnx(
    run: str | Path, out: str | Path | None = None, *, opset: int = 18, check: bool = True,
    atol: float = 1e-4,
) -> dict[str, Any]:  # fmt: skip
    """Write the run's model as ONNX (dynamic batch size); compare with onnxruntime."""
    from cnnlab.training.spine import build_model_from_spec

    try:
        import onnx  # noqa: F401  (the exporter needs it)
    except ImportError:
        raise ExportError(
            "ONNX export needs the onnx package: pip install 'cnnlab[export]' "
            "(onnx, onnxscript, onnxruntime)"
        ) from None
    ckpt = load_checkpoint(run)
    spec = ckpt.meta["model"]
    model = build_model_from_spec(spec)
    ckpt.load_model(model)
    model.eval()
    out = Path(out) if out is not None else ckpt.path.parent / "model.onnx"
    x = torch.randn(2, spec["in_chans"], spec["input_size"], spec["input_size"])
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        _export(model, x, tmp, opset)
        result = {"path": str(out), "opset": opset, "verified": False}
        if check:
            result.update(_verify(model, tmp, spec, atol))
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return result


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
