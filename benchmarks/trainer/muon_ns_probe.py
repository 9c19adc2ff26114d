"""Muon's Newton-Schulz iteration in bf16 or fp32: its time and a whole training step's.

torch.optim.Muon orthogonalises every update in bf16; on a CPU without native bf16 that matmul
is emulated. This probe runs ``configs/fast/fastbest.yaml`` (fastnet, Muon for the filters)
through cnnlab's own trainer at each width with ``optim.params.ns_precision`` bf16 and fp32,
interleaved, and times (a) the orthogonalisation of all the net's filter matrices, (b) whole
training steps (median after a warm-up). Writes a Markdown table:

    python benchmarks/trainer/muon_ns_probe.py --data-dir ../shared/data \
        --out benchmarks/trainer/muon_ns.md
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from cnnlab.config import load_config
from cnnlab.engine.callbacks import Callback
from cnnlab.hardware import cpu_has_native_bf16
from cnnlab.models.spec import build_model
from cnnlab.optim.muon import matrix_view, orthogonalize
from cnnlab.reports.environment import environment_info, environment_line
from cnnlab.training.assemble import load_run_dataset, model_spec_of
from cnnlab.training.spine import train_model

RECIPE = Path(__file__).resolve().parents[2] / "configs" / "fast" / "fastbest.yaml"
COEFFICIENTS = (3.4445, -4.7750, 2.0315)  # torch.optim.Muon's defaults
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


class StepTimer(Callback):
    """Wall time of each training step; stops the run after ``steps``."""

    def __init__(self, steps: int) -> None:
        self.steps, self.times, self.last = steps, [], time.perf_counter()

    def on_step_end(self, trainer, state) -> None:
        now = time.perf_counter()
        self.times.append(now - self.last)
        self.last = now
        if state.step >= self.steps:
            state.should_stop = True


def ns_seconds(net: torch.nn.Module, dtype: torch.dtype, repeats: int = 3) -> float:
    """Median time to orthogonalise one update of every filter of ``net``."""
    mats = [torch.randn_like(matrix_view(p.detach())) for p in net.parameters() if p.ndim == 4]
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        for m in mats:
            orthogonalize(m, COEFFICIENTS, 5, 1e-7, dtype)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def step_seconds(widths: list[int], precision: str, data_dir: str, steps: int) -> tuple:
    cfg = load_config(RECIPE, [f"data.data_dir={data_dir}", f"model.params.widths={widths}",
                               f"optim.params.ns_precision={precision}"])  # fmt: skip
    dataset = load_run_dataset(cfg, log=lambda _: None)
    net = build_model(model_spec_of(cfg, dataset))
    timer = StepTimer(steps)
    train_model(net, cfg, epochs=1, log=lambda _: None, callbacks=[timer])
    return statistics.median(timer.times[2:]), ns_seconds(net, DTYPES[precision])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--widths", default="64,128,256;96,192,384", help="';'-separated width lists")
    ap.add_argument("--steps", type=int, default=8, help="training steps per run (2 warm-up)")
    ap.add_argument("--out", default=str(Path(__file__).with_name("muon_ns.md")))
    args = ap.parse_args()
    rows = []
    for spec in args.widths.split(";"):
        widths = [int(w) for w in spec.split(",")]
        got = {p: step_seconds(widths, p, args.data_dir, args.steps) for p in DTYPES}
        rows.append((widths, got))
    lines = ["# Muon's Newton-Schulz iteration: bf16 against fp32", "",
             environment_line(environment_info()) + f"; native bf16: {cpu_has_native_bf16()}",
             "", f"Command: `python benchmarks/trainer/muon_ns_probe.py --data-dir {args.data_dir}"
             f" --widths '{args.widths}' --steps {args.steps} --out {args.out}`", "",
             f"`configs/fast/fastbest.yaml` (batch 250) through cnnlab's trainer, "
             f"{torch.get_num_threads()} threads; a step is the median of steps 3-{args.steps}.",
             "", "| fastnet widths | NS bf16 (s/step) | NS fp32 | step with bf16 NS (s) | "
             "step with fp32 NS | step speed-up |", "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for widths, got in rows:
        (sb, nb), (sf, nf) = got["bf16"], got["fp32"]
        lines.append(f"| {'/'.join(map(str, widths))} | {nb:.3f} | {nf:.3f} | {sb:.3f} | "
                     f"{sf:.3f} | {sb / sf:.2f}x |")  # fmt: skip
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
