"""int8 through torch's x86 kernels is CPU-only (issue 23): ``quantize_int8`` refuses another
device by name; the compression step falls back to a CPU copy and says so."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from cnnlab.compression.int8 import off_cpu, quantize_int8
from cnnlab.compression.state import CompressionError, CompressState
from cnnlab.compression.steps import COMPRESSION


def _net() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                               torch.nn.Linear(4 * 4 * 4, 3))  # fmt: skip


def test_quantize_int8_refuses_a_model_on_another_device_by_name():
    # "meta" stands in for a GPU: a real device that is not the CPU, on any machine
    model = _net().to("meta")
    with pytest.raises(CompressionError, match=r"CPU only.*on meta.*model\.cpu\(\)"):
        quantize_int8(model, [torch.randn(2, 1, 6, 6)])
    with pytest.raises(CompressionError, match="on meta"):
        quantize_int8(_net(), [torch.randn(2, 1, 6, 6, device="meta")])
    assert off_cpu(_net(), [torch.zeros(1)]) == []


def test_the_int8_step_quantises_a_cpu_copy_and_says_so():
    logged: list[str] = []
    gen = torch.Generator().manual_seed(0)
    batches = [(torch.randn(8, 1, 6, 6, generator=gen), torch.zeros(8)) for _ in range(2)]
    ctx = SimpleNamespace(
        sample_batches=lambda n: batches[:n], log=logged.append,
        data=SimpleNamespace(train=SimpleNamespace(images=torch.empty(0, device="meta"))),
    )  # fmt: skip
    state = CompressState(_net().eval(), {"name": "tiny"})
    report = COMPRESSION.build("int8", calibration_batches=2).apply(state, ctx)
    assert report["device"] == "cpu" and "CPU only" in report["note"] and "meta" in report["note"]
    assert logged == [report["note"]]
    assert state.int8 is not None and not off_cpu(state.model)
    # a run on the CPU quantises without a note
    ctx.data.train.images = torch.empty(0)
    logged.clear()
    report = COMPRESSION.build("int8", calibration_batches=1).apply(
        CompressState(_net().eval(), {"name": "tiny"}), ctx
    )
    assert "note" not in report and logged == []
