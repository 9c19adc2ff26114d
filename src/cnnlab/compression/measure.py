"""What a compressed model costs and how well it does (Handbook §4 intro: size *and* time).

Parameters and non-zero parameters, multiply-adds (``cnnlab.inspect.summary``; the handbook
counts 2 FLOPs per MAC), bytes on disk (the file as actually saved), CPU latency at batch 1
and throughput at batch 256, and test accuracy. Timing compares models *in one run*: the
repetitions interleave the models (rotating which goes first), and each figure is the median
over repetitions, so a machine that slows down mid-run hurts every model alike.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterable, Mapping

import torch
from torch import nn

from cnnlab.evaluation.evaluate import evaluate
from cnnlab.inspect.summary import summary


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(parameters, non-zero parameters): learnable tensors, plus the weights and biases
    packed inside quantized modules (which hold no ``nn.Parameter``)."""
    total = nonzero = 0
    seen: set[int] = set()
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
            nonzero += int(torch.count_nonzero(p.detach()))
    own = {n for n, _ in model.named_parameters()}
    for key, value in model.state_dict().items():
        packed = isinstance(value, tuple) or getattr(value, "is_quantized", False)
        loose_bias = key.endswith(".bias") and key not in own  # a quantized conv's float bias
        if not (packed or loose_bias):
            continue
        for t in value if isinstance(value, tuple) else (value,):
            if not isinstance(t, torch.Tensor):
                continue
            total += t.numel()
            values = t.int_repr() - _zero_points(t) if t.is_quantized else t.detach()
            nonzero += int(torch.count_nonzero(values))
    return total, nonzero


def _zero_points(t: torch.Tensor) -> torch.Tensor:
    if t.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
        shape = [1] * t.dim()
        shape[t.q_per_channel_axis()] = -1
        return t.q_per_channel_zero_points().view(shape)
    return torch.tensor(t.q_zero_point())


def model_macs(model: nn.Module, input_size: tuple[int, int, int]) -> int:
    """Multiply-adds per image of a float model (``cnnlab.inspect.summary``)."""
    return summary(model, input_size).macs


def has_conv(model: nn.Module) -> bool:
    """True for float or quantized convolutional models (channels-last pays off for them)."""
    return any("Conv" in type(m).__name__ for m in model.modules())


def timing_form(model: nn.Module) -> nn.Module:
    """The model as timed: eval mode; fp32 conv nets in channels-last (measured faster on this
    CPU). Inputs are channels-last for every model (also slightly faster for int8 here)."""
    model = model.eval()
    if has_conv(model) and not any(getattr(v, "is_quantized", False)
                                   for v in model.state_dict().values()):  # fmt: skip
        model = model.to(memory_format=torch.channels_last)
    return model


@torch.inference_mode()
def time_models(
    models: Mapping[str, nn.Module],
    input_size: tuple[int, int, int],
    *,
    batch_sizes: Iterable[int] = (1, 256),
    repeats: int = 7,
    calls: Mapping[int, int] | None = None,
    warmup: int = 2,
    seed: int = 0,
) -> dict[str, dict[int, float]]:
    """Median seconds per forward pass for every model and batch size, measured interleaved.

    ``calls[b]`` forward passes are timed together per repetition (default: enough to fill
    about 64 images, so batch 1 is not dominated by timer resolution).
    """
    if not models:
        return {}
    names = list(models)
    prepared = {n: timing_form(m) for n, m in models.items()}
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, dict[int, float]] = {n: {} for n in names}
    for b in batch_sizes:
        x = torch.randn(b, *input_size, generator=gen).contiguous(memory_format=torch.channels_last)
        n_calls = (calls or {}).get(b, max(1, 64 // b))
        for name in names:
            for _ in range(warmup):
                prepared[name](x)
        samples: dict[str, list[float]] = {n: [] for n in names}
        for r in range(repeats):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                start = time.perf_counter()
                for _ in range(n_calls):
                    prepared[name](x)
                samples[name].append((time.perf_counter() - start) / n_calls)
        for name in names:
            out[name][b] = statistics.median(samples[name])
    return out


def accuracy(model: nn.Module, batches, num_classes: int) -> float:
    """Top-1 accuracy on ``batches`` (``cnnlab.evaluation.evaluate``; no autocast)."""
    return evaluate(model, batches, num_classes=num_classes).accuracy


def file_bytes(path) -> int:
    from pathlib import Path

    return Path(path).stat().st_size
