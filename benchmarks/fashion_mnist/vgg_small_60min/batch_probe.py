"""Which batch size trains the small VGG fastest (images/s) on this CPU?

Runs cnnlab's own trainer (what ``cnnlab train`` runs) with the 60-minute recipe
(``recipe.yaml`` here) at each ``--batches`` size in a fresh process, times ``--steps``
optimiser steps after ``--warmup`` steps and reports the median images/s. The sizes alternate
in order over ``--rounds`` so a drift in the machine's load hits them alike; only the ratios
within one run mean anything.

    python benchmarks/fashion_mnist/vgg_small_60min/batch_probe.py --data-dir ../shared/data \
        --batches 100,128,256 --threads 2 --steps 20   # writes batch_probe.md next to this file
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def time_steps(batch: int, data_dir: str, warmup: int, steps: int) -> list[float]:
    """In this process: the seconds of each timed step at this batch size."""
    from cnnlab.config import build_config, read_yaml
    from cnnlab.engine.callbacks import StepClock
    from cnnlab.models.spec import build_model
    from cnnlab.training.assemble import load_run_dataset, model_spec_of
    from cnnlab.training.spine import train_model

    tree = read_yaml(HERE / "recipe.yaml")
    cfg = build_config(
        tree, [f"data.data_dir={data_dir}", "train.progress=false", f"data.batch_size={batch}"]
    )
    dataset = load_run_dataset(cfg, log=lambda _: None)
    net = build_model(model_spec_of(cfg, dataset))

    clock = StepClock(stop_after=warmup + steps)
    train_model(net, cfg, epochs=1, log=lambda _: None, callbacks=[clock])
    return clock.step_seconds(warmup)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--batches", default="100,128,256")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(HERE / "batch_probe.md"))
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:  # one measurement, in its own process
        import torch

        torch.set_num_threads(args.threads)
        print(json.dumps(time_steps(args.child, args.data_dir, args.warmup, args.steps)))
        return

    from cnnlab.reports.environment import environment_info, environment_line

    batches = [int(b) for b in args.batches.split(",")]
    rates: dict[int, list[float]] = {b: [] for b in batches}
    for r in range(args.rounds):
        for batch in batches if r % 2 == 0 else batches[::-1]:
            cmd = [sys.executable, __file__, "--data-dir", args.data_dir, "--threads",
                   str(args.threads), "--warmup", str(args.warmup), "--steps",
                   str(args.steps), "--child", str(batch)]  # fmt: skip
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            rates[batch] += [batch / s for s in json.loads(out.strip().splitlines()[-1])]
    base = statistics.median(rates[batches[0]])
    rows = [
        f"| {b} | {statistics.median(rates[b]):.0f} | {statistics.median(rates[b]) / base:.2f}x "
        f"| {60_000 / statistics.median(rates[b]):.0f} |"
        for b in batches
    ]
    command = " ".join(["python", "benchmarks/fashion_mnist/vgg_small_60min/batch_probe.py",
                        *sys.argv[1:]])  # fmt: skip
    text = "\n".join([
        "# Small-VGG training throughput by batch size", "",
        f"{time.strftime('%Y-%m-%d %H:%M')}, {environment_line(environment_info())}; "
        f"{args.threads} thread(s) per run, the 60-minute recipe (recipe.yaml).", "",
        f"Command: `{command}`", "",
        f"Median over {args.rounds} fresh processes per size x {args.steps} steps "
        f"(after {args.warmup} warm-up steps):", "",
        "| batch | train images/s | vs first | s per 60k-image epoch |",
        "|---:|---:|---:|---:|", *rows, "",
    ])  # fmt: skip
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
