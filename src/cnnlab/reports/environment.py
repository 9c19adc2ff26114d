"""The hardware/software line of every run and report (what produced these numbers)."""

from __future__ import annotations

import os
import platform
import sys
from functools import cache
from pathlib import Path
from typing import Any

import torch

import cnnlab
from cnnlab.hardware import cpu_has_native_bf16
from cnnlab.reports.fmt import fmt_count


@cache
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_capability() -> str:
    try:
        return torch.backends.cpu.get_cpu_capability()
    except Exception:  # older torch
        return "unknown"


def environment_info(device: torch.device | None = None) -> dict[str, Any]:
    """Versions and hardware, JSON-able."""
    import numpy

    info: dict[str, Any] = {
        "cnnlab": cnnlab.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_capability": cpu_capability(),
        # "AVX512" alone does not say it (Skylake-era AVX512 lacks bf16), and timings
        # hinge on it: benchmarks/time_to_accuracy/README.md, "Other hosts"
        "cpu_native_bf16": cpu_has_native_bf16(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device) if device is not None else "cpu",
        "executable": sys.executable,
        # Other work on the machine changes every timing: record how busy it was.
        "load_average_1min": _loadavg(),
    }
    if device is not None and device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _loadavg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def cpu_features(info: dict[str, Any]) -> str:
    """'AVX512, native bf16' or 'AVX2': the vector unit and whether bf16 runs natively
    (records written before ``cpu_native_bf16`` existed give the vector unit alone)."""
    bf16 = ", native bf16" if info.get("cpu_native_bf16") else ""
    return f"{info['cpu_capability']}{bf16}"


def environment_line(info: dict[str, Any]) -> str:
    """One human line: CPU, cores, device, versions."""
    dev = info.get("gpu") or info.get("device", "cpu")
    load = info.get("load_average_1min")
    busy = f", load average {load} at start" if load is not None else ""
    return (
        f"{info['cpu']} ({info['cpu_count']} cores, {cpu_features(info)}), device {dev}, "
        f"{fmt_count(info['torch_threads'], 'thread')}{busy}; Python {info['python']}, "
        f"torch {info['torch']}, cnnlab {info['cnnlab']}"
    )
