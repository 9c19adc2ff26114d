"""Which devices have native bf16: read from /proc/cpuinfo's flags, CUDA asked directly."""

from __future__ import annotations

import pytest
import torch

import cnnlab.hardware as hardware


@pytest.fixture
def cpuinfo(monkeypatch, tmp_path):
    """Point the flag reader at a file of our own; the real answer comes back afterwards."""
    info = tmp_path / "cpuinfo"
    monkeypatch.setattr(hardware, "CPUINFO", info)
    hardware.cpu_has_native_bf16.cache_clear()
    yield info
    hardware.cpu_has_native_bf16.cache_clear()


@pytest.mark.parametrize(("flags", "expected"), [("fpu avx2 fma", False),
                                                 ("avx512f avx512_bf16", True),
                                                 ("amx_bf16 amx_tile", True)])  # fmt: skip
def test_cpu_flags_decide_native_bf16(cpuinfo, flags, expected) -> None:
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    assert hardware.cpu_has_native_bf16() is expected
    assert hardware.native_bf16(torch.device("cpu")) is expected
    assert hardware.native_bf16(torch.device("meta")) is False


def test_unreadable_cpuinfo_means_no_native_bf16(cpuinfo) -> None:
    assert not cpuinfo.exists()
    assert hardware.cpu_has_native_bf16() is False
