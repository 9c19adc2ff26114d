"""Where a cnnlab training step spends its time: torch.profiler over real trainer steps.

Runs cnnlab's own Trainer (the same code ``cnnlab train`` uses) with the case-study recipe of
each model, profiles a window of steps after a warm-up, groups the operators into conv,
matmul, optimiser, pooling/activation/dropout, loss and the rest, and writes a Markdown table:

    python benchmarks/trainer/profile_step.py --data-dir ../shared/data --models cnn2,resnet20 \
        --out benchmarks/trainer/profile.md
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, schedule

from cnnlab.config import build_config
from cnnlab.engine.callbacks import Callback
from cnnlab.models.spec import build_model
from cnnlab.reports.environment import environment_info, environment_line
from cnnlab.training.assemble import load_run_dataset, model_spec_of
from cnnlab.training.spine import train_model

GROUPS = {  # first matching substring wins; names are aten operator names
    "convolution (forward + backward)": ("convolution", "conv2d", "mkldnn_conv", "conv_depthwise"),
    "matmul / linear": ("addmm", "mm", "linear", "matmul"),
    "optimiser (Adam)": ("_foreach", "adam", "lerp", "addcdiv", "addcmul", "sqrt"),
    "pooling": ("pool",),
    "activation / dropout / batch norm": ("relu", "threshold", "dropout", "batch_norm", "mul"),
    "loss / softmax": ("softmax", "nll", "cross_entropy"),
    "data (index, convert, normalise)": ("index", "copy_", "to", "sub", "div"),
}


class StopAfter(Callback):
    """Step the profiler each training step; stop the run when its window is complete."""

    def __init__(self, prof: profile, steps: int) -> None:
        self.prof, self.steps = prof, steps

    def on_step_end(self, trainer, state) -> None:
        self.prof.step()
        if state.step >= self.steps:
            state.should_stop = True


def _group(name: str) -> str:
    low = name.lower()
    for group, keys in GROUPS.items():
        if any(k in low for k in keys):
            return group
    return "other"


def profile_model(model: str, data_dir: str, wait: int, active: int) -> dict:
    cfg = build_config({"model": {"name": model}, "data": {"data_dir": data_dir},
                        "optim": {"name": "adam", "lr": 0.001}})  # fmt: skip
    dataset = load_run_dataset(cfg, log=lambda _: None)
    net = build_model(model_spec_of(cfg, dataset))
    sched = schedule(wait=wait, warmup=2, active=active, repeat=1)
    with profile(activities=[ProfilerActivity.CPU], schedule=sched) as prof:
        train_model(net, cfg, epochs=1, log=lambda _: None,
                    callbacks=[StopAfter(prof, wait + 2 + active)])  # fmt: skip
    totals: dict[str, float] = {}
    top = []
    for ev in prof.key_averages():
        if ev.key.startswith("ProfilerStep"):
            continue
        totals[_group(ev.key)] = totals.get(_group(ev.key), 0.0) + ev.self_cpu_time_total
        top.append((ev.self_cpu_time_total, ev.key, ev.count))
    top.sort(reverse=True)
    total = sum(totals.values())
    return {"model": model, "steps": active, "total_ms": total / 1000, "groups": totals,
            "top": top[:12]}  # fmt: skip


def to_markdown(results: list[dict], command: str) -> str:
    lines = ["# Where a training step's time goes", "", environment_line(environment_info()), "",
             f"Command: `{command}`", ""]  # fmt: skip
    for r in results:
        ms = r["total_ms"] / r["steps"]
        lines += [f"## {r['model']}: {ms:.1f} ms of operator self-time per step (batch 100, "
                  f"{torch.get_num_threads()} threads)", "", "| group | share | ms/step |",
                  "|---|---:|---:|"]  # fmt: skip
        for g, t in sorted(r["groups"].items(), key=lambda kv: -kv[1]):
            lines.append(f"| {g} | {100 * t / 1000 / r['total_ms']:.1f}% "
                         f"| {t / 1000 / r['steps']:.2f} |")  # fmt: skip
        lines += ["", "Top operators (self CPU time):", "", "| operator | calls | ms/step |",
                  "|---|---:|---:|"]  # fmt: skip
        for t, name, count in r["top"]:
            lines.append(f"| `{name}` | {count} | {t / 1000 / r['steps']:.2f} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--models", default="cnn2,resnet20")
    ap.add_argument("--steps", type=int, default=30, help="profiled steps per model")
    ap.add_argument("--out", default=str(Path(__file__).with_name("profile.md")))
    args = ap.parse_args()
    results = [profile_model(m, args.data_dir, 10, args.steps) for m in args.models.split(",")]
    command = (f"python benchmarks/trainer/profile_step.py --data-dir {args.data_dir} "
               f"--models {args.models} --steps {args.steps} --out {args.out}")  # fmt: skip
    text = to_markdown(results, command)
    Path(args.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
