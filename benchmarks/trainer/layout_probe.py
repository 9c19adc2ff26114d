"""Is channels_last (NHWC) faster than NCHW for a model's training step on this CPU?

``train.channels_last: auto`` turns NHWC on for every conv net; this probe checks that choice
per model. For each ``name[:width]`` it times SGD training steps (batch 100, 1x28x28 inputs,
cross-entropy) in both layouts in this process, alternating NCHW, NHWC, NHWC, NCHW, ... over
``--rounds`` so a change in the machine's load hits both alike, and reports the median step
time of each and their ratio (only the ratio is meaningful on a shared machine).

    python benchmarks/trainer/layout_probe.py --models resnet20,resnet20:0.45,lenet5 \
        --threads 1 --out benchmarks/trainer/layout.md
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def build(entry: str) -> tuple[torch.nn.Module, list[int]]:
    """``name`` or ``name:width`` -> (model, out_channels of its convolutions)."""
    from cnnlab.models.spec import build_model

    name, _, width = entry.partition(":")
    params = {"width": float(width)} if width else {}
    spec = {"name": name, "params": params, "num_classes": 10, "in_chans": 1, "input_size": 28}
    model = build_model(spec)
    return model, [m.out_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d)]


def step_seconds(entry: str, nhwc: bool, steps: int, warmup: int) -> list[float]:
    """Seconds of each of ``steps`` SGD steps (after ``warmup``) of a fresh model."""
    torch.manual_seed(0)
    model, _ = build(entry)
    fmt = torch.channels_last if nhwc else torch.contiguous_format
    model = model.to(memory_format=fmt).train()
    x = torch.randn(100, 1, 28, 28).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (100,))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="resnet20,resnet20:0.45,lenet5,cnn2")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--out", default=str(HERE / "layout.md"))
    args = ap.parse_args(argv)
    import cnnlab.components  # noqa: F401  (fills the registries)
    from cnnlab.reports.environment import environment_info, environment_line

    torch.set_num_threads(args.threads)
    rows = []
    for entry in args.models.split(","):
        times: dict[bool, list[float]] = {False: [], True: []}
        for r in range(args.rounds):
            for nhwc in (False, True) if r % 2 == 0 else (True, False):
                times[nhwc] += step_seconds(entry, nhwc, args.steps, args.warmup)
        nchw, nhwc = (1000 * statistics.median(times[k]) for k in (False, True))
        channels = build(entry)[1]
        rows.append(f"| {entry} | {min(channels)}-{max(channels)} | {nchw:.1f} | {nhwc:.1f} | "
                    f"{nchw / nhwc:.2f} |")  # fmt: skip
        print(rows[-1], flush=True)
    command = shlex.join(["python", "benchmarks/trainer/layout_probe.py",
                          *(argv if argv is not None else sys.argv[1:])])  # fmt: skip
    text = "\n".join([
        "# Training-step time by memory layout (NCHW vs channels_last)", "",
        f"`{command}`", "",
        f"{time.strftime('%Y-%m-%d %H:%M')}, {environment_line(environment_info())}; "
        f"{args.threads} thread(s), batch 100, {args.rounds} alternating rounds of "
        f"{args.steps} timed steps per layout (median).", "",
        "| model[:width] | conv channels | NCHW ms/step | NHWC ms/step | NHWC speed-up |",
        "|---|---:|---:|---:|---:|", *rows, "",
    ])  # fmt: skip
    Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
