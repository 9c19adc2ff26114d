"""Does ``train.compile`` (torch.compile, inductor) pay for cnnlab's training steps here?

Each variant runs cnnlab's own trainer (the code ``cnnlab train`` runs) with a model's `best`
recipe on Fashion-MNIST in a fresh process, times ``--steps`` optimiser steps after
``--warmup`` steps (which include the compilation), and reports the median step time. The
variants alternate (eager, compiled, compiled, eager, ...) over ``--rounds`` so a drift in the
machine's load hits both alike; only their ratio within one run is meaningful.

    python benchmarks/trainer/compile_probe.py --data-dir ../shared/data --models resnet20,cnn2 \
        --threads 1 --out benchmarks/trainer/compile.md
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


def time_steps(model: str, data_dir: str, compiled: bool, warmup: int, steps: int) -> dict:
    """In this process: seconds of each timed step and the warm-up's wall time."""
    import torch

    from cnnlab.config import build_config, read_yaml
    from cnnlab.engine.callbacks import StepClock
    from cnnlab.models.spec import build_model
    from cnnlab.recipes import load_preset
    from cnnlab.training.assemble import load_run_dataset, model_spec_of
    from cnnlab.training.spine import train_model

    tree = read_yaml(load_preset("best").recipe_path(model))
    cfg = build_config(tree, [f"data.data_dir={data_dir}", "train.progress=false"])
    dataset = load_run_dataset(cfg, log=lambda _: None)
    net = build_model(model_spec_of(cfg, dataset))
    if compiled:  # what train.compile=true does (cnnlab.training.run_directory.TrainingRun)
        net = torch.compile(net)

    clock = StepClock(stop_after=warmup + steps)
    start = time.perf_counter()
    train_model(net, cfg, epochs=1, log=lambda _: None, callbacks=[clock])
    return {"warmup_s": clock.marks[warmup - 1] - start, "step_s": clock.step_seconds(warmup)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--models", default="resnet20,cnn2")
    ap.add_argument("--warmup", type=int, default=15)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(HERE / "compile.md"))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:  # one measurement, in its own process
        import torch

        torch.set_num_threads(args.threads)
        model, compiled = args.child.split(":")
        print(json.dumps(time_steps(model, args.data_dir, compiled == "1", args.warmup,
                                    args.steps)))  # fmt: skip
        return

    from cnnlab.reports.environment import environment_info, environment_line

    rows = []
    for model in args.models.split(","):
        times: dict[bool, list[float]] = {False: [], True: []}
        warm: dict[bool, list[float]] = {False: [], True: []}
        for r in range(args.rounds):
            for compiled in (False, True) if r % 2 == 0 else (True, False):
                cmd = [sys.executable, __file__, "--data-dir", args.data_dir, "--threads",
                       str(args.threads), "--warmup", str(args.warmup), "--steps",
                       str(args.steps), "--child", f"{model}:{int(compiled)}"]  # fmt: skip
                out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
                res = json.loads(out.strip().splitlines()[-1])
                times[compiled] += res["step_s"]
                warm[compiled].append(res["warmup_s"])
        eager, comp = statistics.median(times[False]), statistics.median(times[True])
        w_eager, w_comp = statistics.median(warm[False]), statistics.median(warm[True])
        rows.append(f"| {model} | {1000 * eager:.1f} | {1000 * comp:.1f} | {eager / comp:.2f}x "
                    f"| {w_eager:.1f} | {w_comp:.1f} |")  # fmt: skip
    command = " ".join(["python", "benchmarks/trainer/compile_probe.py", *sys.argv[1:]])
    text = "\n".join([
        "# torch.compile for cnnlab training steps", "",
        f"{time.strftime('%Y-%m-%d %H:%M')}, {environment_line(environment_info())}; "
        f"{args.threads} thread(s) per run, batch 100, the `best` recipes.", "",
        f"Command: `{command}`", "",
        f"Median step time over {args.rounds} fresh processes per variant x {args.steps} steps "
        f"(after {args.warmup} warm-up steps, which include the compilation):", "",
        "| model | eager ms/step | compiled ms/step | speed-up | warm-up s, eager | compiled |",
        "|---|---:|---:|---:|---:|---:|", *rows, "",
    ])  # fmt: skip
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
