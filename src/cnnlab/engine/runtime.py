"""Where and how a run computes: device, mixed precision, memory format, threads.

Picked once per run from the ``train`` config section and passed down; nothing else in the
package decides the device. ``auto`` settings choose what is fast *on this machine*: bf16
autocast only where the CPU has native bf16 instructions (emulated bf16 is many times slower
than fp32 — measured on an AVX2-only EPYC, see benchmarks/), fp16/bf16 on CUDA, and the
channels-last memory format for convolutional models.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn as nn

from cnnlab.hardware import cpu_has_native_bf16

# torch.compile's modes (``train.compile_mode``); the ones that also capture CUDA graphs
# replay a whole forward or backward pass as one launch, which is what removes the launch
# overhead of small networks at small batches on a GPU (issue 23).
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
CUDAGRAPH_MODES = ("reduce-overhead", "max-autotune")


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    amp_dtype: torch.dtype | None  # None: full fp32
    channels_last: bool
    compile: bool = False
    compile_mode: str = "default"

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    @property
    def precision(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.amp_dtype]

    @property
    def uses_cudagraphs(self) -> bool:
        """True when the compiled model replays CUDA graphs (the trainer then marks each
        step's start, so a graph's outputs are never read after the next replay)."""
        return self.compile and self.device.type == "cuda" and self.compile_mode in CUDAGRAPH_MODES

    def prepare_model(self, model: nn.Module) -> nn.Module:
        model = model.to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return model

    def compile_model(self, model: nn.Module) -> nn.Module:
        """``torch.compile(model, mode=compile_mode)`` when ``compile`` is set, else ``model``.
        The compiled wrapper shares the parameters; save and load the original module."""
        if not self.compile:
            return model
        mode = None if self.compile_mode == "default" else self.compile_mode
        return torch.compile(model, mode=mode)

    def describe(self) -> str:
        cl = ", channels_last" if self.channels_last else ""
        if self.compile:
            cl += f", compiled ({self.compile_mode})"
        n = torch.get_num_threads()
        return f"{self.device} {self.precision}{cl}, {n} thread{'s' if n != 1 else ''}"


def pick_device(spec: str = "auto") -> torch.device:
    """``auto`` -> the first CUDA device if there is one, else the CPU."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"train.device={spec!r} but CUDA is not available on this machine")
    return device


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        if device.type != "cuda":
            raise RuntimeError("train.precision=fp16 needs a CUDA device; use bf16 or fp32 on CPU")
        return torch.float16
    if device.type == "cuda":  # auto
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_native_bf16() else None


def has_conv(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def resolve_runtime(train_cfg, model: nn.Module | None = None, dist=None) -> Runtime:
    """Runtime from a ``TrainConfig``; sets the thread count if one is given. Under torchrun
    each process takes the CUDA device of its local rank."""
    if train_cfg.threads is not None:
        torch.set_num_threads(train_cfg.threads)
    device = pick_device(train_cfg.device)
    if dist is not None and dist.enabled and device.type == "cuda" and device.index is None:
        device = torch.device("cuda", dist.local_rank)
    amp = resolve_precision(train_cfg.precision, device)
    if train_cfg.channels_last == "auto":
        # NHWC lets oneDNN/cuDNN pick their fast convolution and pooling kernels: on this
        # project's AVX2 CPU it trained cnn1 1.5x, resnet20 1.3x, vgg_small 1.2x faster in
        # fp32 (benchmarks/trainer/); models without convolutions gain nothing.
        cl = model is not None and has_conv(model)
    else:
        cl = train_cfg.channels_last == "on"
    return Runtime(device=device, amp_dtype=amp, channels_last=cl, compile=train_cfg.compile,
                   compile_mode=getattr(train_cfg, "compile_mode", "default"))  # fmt: skip
