"""int8 post-training quantisation with torch's own machinery (Handbook §4.3; Jacob et al. 2018).

FX graph mode (``torch.ao.quantization.quantize_fx.prepare_fx`` / ``convert_fx``) with the
default x86 qconfig mapping: per-channel symmetric int8 weights, per-tensor affine uint8
activations from histogram observers; conv-BN(-ReLU) and linear-BN pairs are fused first.
Calibration runs a few batches of training images through the observed model. At batch 256
on one thread (benchmarks/compression/results/study.md) the converted vgg_small runs 5.8x the
fp32 throughput on an AVX-512 EPYC with VNNI and ran 2.1x on an AVX2-only one. torch marks
``torch.ao.quantization`` as deprecated in favour of the PT2E flow in torchao, which torch 2.13
alone does not ship; the FX flow still works here, and its warnings are silenced where it is
called.

Device: torch's quantized kernels (fbgemm/x86, oneDNN, qnnpack) exist for the CPU only, so
``quantize_int8`` refuses a model or batches on another device (a GPU) with a message saying
so, and the ``int8`` compression step, given a run trained on a GPU, quantises a CPU copy and
says so in its log and report: the int8 model is measured on the CPU.

Storage: the converted model's state dict, with every quantized tensor as its int8/uint8
integer values plus scales and zero points (per channel or per tensor). Loading rebuilds the
float model, runs ``prepare_fx``/``convert_fx`` again on one dummy batch to get the same graph,
and loads the stored state, so the reloaded model computes exactly the same outputs.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from cnnlab.compression.binary_layers import BINARY_LAYERS
from cnnlab.compression.encoding import StorageError, Tensors
from cnnlab.compression.state import CompressionError, CompressState
from cnnlab.compression.steps import COMPRESSION, Step, check_choice, check_int

BACKENDS = ("x86", "fbgemm", "onednn", "qnnpack")


class Logits(nn.Module):
    """``net(x)`` as a one-argument module (FX cannot trace the zoo's ``return_features``)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def quantize_int8(
    model: nn.Module, batches: Iterable[torch.Tensor], backend: str = "x86"
) -> nn.Module:
    """A converted int8 copy of ``model`` (left untouched), calibrated on ``batches``."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    if backend not in BACKENDS:
        raise ValueError(f"int8 backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    batches = list(batches)
    elsewhere = off_cpu(model, batches)
    if elsewhere:
        raise CompressionError(
            f"int8: torch's int8 quantisation ({backend} kernels) runs on the CPU only, and the "
            f"model or its calibration batches are on {', '.join(elsewhere)}; quantise a CPU "
            "copy (model.cpu() and CPU batches): the int8 model then runs on the CPU"
        )
    torch.backends.quantized.engine = backend  # the kernels the converted model will run
    net = Logits(copy.deepcopy(model).float().eval())
    batches = [x.detach().contiguous() for x in batches]
    if not batches:
        raise ValueError("int8 quantisation needs at least one calibration batch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation of torch.ao and observer range notes
        try:
            prepared = prepare_fx(net, get_default_qconfig_mapping(backend), (batches[0],))
            with torch.inference_mode():
                for x in batches:
                    prepared(x)
            quantized = convert_fx(prepared)
        except Exception as err:  # tracing/lowering errors come from deep inside torch.fx
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise CompressionError(
                f"int8: torch FX could not quantise {type(model).__name__} ({first})"
            ) from err
    return quantized.eval()


def off_cpu(model: nn.Module, batches: Iterable[torch.Tensor] = ()) -> list[str]:
    """The devices other than the CPU that ``model``'s tensors or ``batches`` are on."""
    tensors = [*model.parameters(), *model.buffers(), *batches]
    return sorted({str(t.device) for t in tensors if t.device.type != "cpu"})


def is_quantized_model(model: nn.Module) -> bool:
    return any(isinstance(v, tuple) or getattr(v, "is_quantized", False)
               for v in model.state_dict().values())  # fmt: skip


def _encode_qtensor(key: str, t: torch.Tensor) -> tuple[Tensors, dict[str, Any]]:
    meta: dict[str, Any] = {"kind": "qtensor", "dtype": str(t.dtype).removeprefix("torch.")}
    tensors = {f"{key}::int": t.int_repr().contiguous()}
    if t.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
        meta["axis"] = t.q_per_channel_axis()
        tensors[f"{key}::scales"] = t.q_per_channel_scales().contiguous()
        tensors[f"{key}::zero_points"] = t.q_per_channel_zero_points().contiguous()
    else:
        meta["scale"], meta["zero_point"] = float(t.q_scale()), int(t.q_zero_point())
    return tensors, meta


def _decode_qtensor(key: str, tensors: Tensors, meta: dict[str, Any]) -> torch.Tensor:
    ints, dtype = tensors[f"{key}::int"], getattr(torch, meta["dtype"])
    if "axis" in meta:
        q = torch._make_per_channel_quantized_tensor(
            ints, tensors[f"{key}::scales"], tensors[f"{key}::zero_points"], meta["axis"]
        )
    else:
        q = torch._make_per_tensor_quantized_tensor(ints, meta["scale"], meta["zero_point"])
    if q.dtype != dtype:
        raise StorageError(f"{key}: stored as {meta['dtype']}, rebuilt as {q.dtype}")
    return q


def encode_value(key: str, value: Any) -> tuple[Tensors, dict[str, Any]]:
    """One entry of a quantized model's state dict: plain/quantized tensor, tuple or dtype."""
    if isinstance(value, torch.dtype):
        return {}, {"kind": "dtype", "value": str(value).removeprefix("torch.")}
    if isinstance(value, tuple):
        tensors: Tensors = {}
        items = []
        for i, item in enumerate(value):
            t, m = encode_value(f"{key}::{i}", item)
            tensors.update(t)
            items.append(m)
        return tensors, {"kind": "tuple", "items": items}
    if value is None:
        return {}, {"kind": "none"}
    if isinstance(value, torch.Tensor) and value.is_quantized:
        return _encode_qtensor(key, value)
    if isinstance(value, torch.Tensor):
        return {key: value.detach().cpu().contiguous()}, {"kind": "dense"}
    raise StorageError(f"{key}: cannot store a {type(value).__name__} from the int8 model")


def decode_value(key: str, tensors: Tensors, meta: dict[str, Any]) -> Any:
    kind = meta["kind"]
    if kind == "dtype":
        return getattr(torch, meta["value"])
    if kind == "tuple":
        return tuple(decode_value(f"{key}::{i}", tensors, m) for i, m in enumerate(meta["items"]))
    if kind == "none":
        return None
    if kind == "qtensor":
        return _decode_qtensor(key, tensors, meta)
    if kind == "dense":
        return tensors[key]
    raise StorageError(f"{key}: unknown int8 entry kind {kind!r}")


@COMPRESSION.register("int8")
def int8(*, calibration_batches: int = 10, backend: str = "x86") -> Step:
    """int8 post-training quantisation (torch FX graph mode, x86 kernels), calibrated."""
    options = {"calibration_batches": check_int("calibration_batches", calibration_batches, 1),
               "backend": check_choice("backend", backend, BACKENDS)}  # fmt: skip

    def apply(state: CompressState, ctx: Any) -> dict[str, Any]:
        if any(isinstance(m, BINARY_LAYERS) for m in state.model.modules()):
            raise CompressionError("int8: binary layers cannot be int8-quantised")
        batches = [x for x, _ in ctx.sample_batches(calibration_batches)]
        data = getattr(getattr(ctx, "data", None), "train", None)
        elsewhere = off_cpu(state.model, [*batches, *([data.images] if data is not None else [])])
        report: dict[str, Any] = {}
        if elsewhere:  # a run trained on a GPU: fall back to the CPU, and say so
            report["note"] = (
                f"int8: torch's int8 kernels run on the CPU only; the run's model/data are on "
                f"{', '.join(elsewhere)}, so a CPU copy is quantised and the int8 model is "
                "measured on the CPU"
            )
            ctx.log(report["note"])
        float_model = state.model.cpu().eval()
        batches = [x.cpu() for x in batches]
        state.model = quantize_int8(float_model, batches, backend)
        state.int8 = {"backend": backend, "float_model": float_model}
        state.encodings = {}
        return {"backend": backend, "calibration_images": sum(len(x) for x in batches),
                "device": "cpu", **report}  # fmt: skip

    return Step("int8", options, apply)
