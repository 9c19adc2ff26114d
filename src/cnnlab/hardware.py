"""What this machine's arithmetic is fast at: the one place cnnlab reads the CPU's flags.

Emulated bf16 (a CPU without AVX512-BF16 or AMX) is many times slower than fp32: on the
AVX2-only EPYC of benchmarks/trainer/profile_avx2.md, bf16 autocast and torch.optim.Muon's bf16
Newton-Schulz iteration both ran ~30x slower than in fp32. The run's precision
(``cnnlab.engine.runtime``) and Muon's orthogonalisation (``cnnlab.optim.muon``) both ask here.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch

CPUINFO = Path("/proc/cpuinfo")


@functools.cache
def cpu_has_native_bf16() -> bool:
    """True when the CPU executes bf16 arithmetic natively (AVX512-BF16 or AMX)."""
    try:
        flags = CPUINFO.read_text().split()
    except OSError:  # not Linux, or no /proc: assume the slow case, fp32 is never wrong
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def native_bf16(device: torch.device) -> bool:
    """True when bf16 matmuls on ``device`` run natively (CUDA with bf16, or such a CPU)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_native_bf16()
