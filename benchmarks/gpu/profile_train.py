"""Where a cnnlab training step's time goes on a GPU: kernels vs launch gaps vs host syncs.

Runs cnnlab's own training (``run_training``, the code ``cnnlab train`` runs) for ``--warmup``
steps, then records ``--steps`` steps with torch.profiler (CPU + CUDA activity), synchronising
the device at both ends of the window, and stops. Over the window's wall time it reports: the
GPU's busy share (the union of the kernel intervals), the rest (launch gaps: the device waits
for the host to issue work), the time the host spent blocked in CUDA synchronisation calls,
kernels and launch calls per step, and the top kernels and host-side operators. Prints the
tables, then one JSON line.

    python benchmarks/gpu/profile_train.py --model resnet20 --set model.params.shortcut=B \
        --data-dir gpu_carry/data [--config RECIPE] [--warmup 20 --steps 30]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict

import torch

from cnnlab.config import build_config, read_yaml
from cnnlab.engine.callbacks import Callback

try:  # the spine's home moved during the package restructuring (issue 20)
    from cnnlab.training.spine import run_training
except ImportError:  # pragma: no cover
    from cnnlab.pipeline import run_training

SYNCS = {"cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize", "cudaMemcpy"}
LAUNCHES = {"cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernelEx",
            "cudaGraphLaunch", "cudaLaunchCooperativeKernel"}  # fmt: skip


class Window(Callback):
    """Profile steps warmup+1 .. warmup+steps, then stop the training."""

    def __init__(self, warmup: int, steps: int, cuda: bool) -> None:
        self.warmup, self.steps, self.cuda = warmup, steps, cuda
        self.prof = None
        self.wall = 0.0

    def _sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def on_step_end(self, trainer, state) -> None:
        if state.step == self.warmup:
            self._sync()
            acts = [torch.profiler.ProfilerActivity.CPU]
            if self.cuda:
                acts.append(torch.profiler.ProfilerActivity.CUDA)
            self.prof = torch.profiler.profile(activities=acts)
            self.prof.__enter__()
            self.t0 = time.perf_counter()
        elif state.step == self.warmup + self.steps and self.prof is not None:
            self._sync()
            self.wall = time.perf_counter() - self.t0
            self.prof.__exit__(None, None, None)
            state.should_stop = True


def _union_us(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b > end:
            total += b - max(a, end)
            end = b
    return total


def summarise(prof, wall_s: float, steps: int) -> dict:
    events = prof.events()
    device = [e for e in events if str(getattr(e, "device_type", "")).endswith("CUDA")]
    host = [e for e in events if e not in device] if device else list(events)
    kernels: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for e in device:
        k = kernels[e.name]
        k[0] += e.time_range.end - e.time_range.start
        k[1] += 1
    busy_us = _union_us([(e.time_range.start, e.time_range.end) for e in device])
    sync_us = sum(e.cpu_time_total for e in host if e.name in SYNCS)
    wall_us = wall_s * 1e6
    ops = sorted(prof.key_averages(), key=lambda a: a.self_cpu_time_total, reverse=True)
    return {
        "steps": steps, "ms_per_step": wall_s * 1e3 / steps,
        "gpu_busy_frac": busy_us / wall_us if device else None,
        "gap_frac": 1 - busy_us / wall_us if device else None,
        "sync_frac": sync_us / wall_us, "sync_calls_per_step": sum(
            e.name in SYNCS for e in host) / steps,
        "kernels_per_step": len(device) / steps,
        "launches_per_step": sum(e.name in LAUNCHES for e in host) / steps,
        "top_kernels": [[n, round(t / 1e3, 3), c] for n, (t, c) in
                        sorted(kernels.items(), key=lambda kv: -kv[1][0])[:12]],
        "top_host_ops": [[a.key, round(a.self_cpu_time_total / 1e3, 3), a.count]
                         for a in ops[:12]],
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model")
    ap.add_argument("--config", help="a recipe YAML (instead of --model's defaults)")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--steps", type=int, default=30)
    args = ap.parse_args()
    tree = read_yaml(args.config) if args.config else {"model": {"name": args.model}}
    sets = [f"data.data_dir={args.data_dir}", "train.progress=false",
            f"train.device={args.device}", *args.overrides]  # fmt: skip
    cfg = build_config(tree, sets)
    cuda = cfg.train.device != "cpu" and torch.cuda.is_available()
    window = Window(args.warmup, args.steps, cuda)
    with tempfile.TemporaryDirectory() as tmp:
        run_training(cfg, f"{tmp}/run", log=lambda m: None, callbacks=[window])
    if window.prof is None or not window.wall:
        raise SystemExit(f"profile_train.py: the run ended before step {args.warmup + args.steps}")
    s = summarise(window.prof, window.wall, args.steps)
    s["config"] = {"model": cfg.model.name, "sets": args.overrides, "recipe": args.config}
    print(f"{s['ms_per_step']:.3f} ms/step; GPU busy {s['gpu_busy_frac']}, host sync "
          f"{s['sync_frac']:.1%}, {s['kernels_per_step']:.0f} kernels and "
          f"{s['launches_per_step']:.0f} launch calls per step")  # fmt: skip
    for title, rows in (("kernels (ms in window, count)", s["top_kernels"]),
                        ("host operators (self ms, count)", s["top_host_ops"])):  # fmt: skip
        print(f"\n{title}:")
        for name, ms, count in rows:
            print(f"  {ms:10.3f}  {count:6d}  {name[:100]}")
    print(json.dumps(s))


if __name__ == "__main__":
    main()
