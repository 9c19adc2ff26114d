"""Test accuracy of one trained member under each TTA view alone and in the study's presets.

Why the study's TTA lines lose ~10 points: its members trained without augmentation, so flipped
or shifted test images are new to them (every shoe in Fashion-MNIST faces left). Usage:

    python benchmarks/ensembles/tta_views.py [RUN_DIR] [--threads N] [--out FILE]

RUN_DIR defaults to the first (unaugmented) study's single model; writes ``--out`` (default
``tta_views.md`` next to this file). The augmented rerun's single model:
``tta_views.py benchmarks/ensembles/runs/study-N15-crop_flip/members/single --out
benchmarks/ensembles/tta_views_crop_flip.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shlex
import sys
from pathlib import Path

import torch

from cnnlab.config import load_config
from cnnlab.engine.checkpoint import atomic_write_text
from cnnlab.ensembles import TTA, preset_views
from cnnlab.ensembles.loading import (
    build_eval_data,
    collect_log_probs,
    eval_runtime,
    load_run_member,
)
from cnnlab.reports.environment import environment_info, environment_line

HERE = Path(__file__).resolve().parent
DEFAULT_RUN = HERE / "runs" / "study-N15" / "members" / "single"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", nargs="?", default=str(DEFAULT_RUN))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(HERE / "tta_views.md"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(Path(args.run) / "config.yaml")
    model, _ = load_run_member(args.run)
    rt = eval_runtime(cfg, model)
    model = rt.prepare_model(model)
    data = build_eval_data(cfg, device=rt.device, channels_last=rt.channels_last)
    mean, std = data.normalizer.mean, data.normalizer.std
    cases = {"identity": ["identity"], "hflip alone": ["hflip"]}
    cases |= {f"shift {v['dy']},{v['dx']} alone": [v] for v in preset_views("shift")[1:]}
    cases |= {f"preset {name}": preset_views(name) for name in ("flip", "shift", "flip_shift")}
    command = shlex.join(["python", "benchmarks/ensembles/tta_views.py", *sys.argv[1:]])
    rows = []
    for label, views in cases.items():
        logp, y, _ = collect_log_probs(TTA(model, views, mean=mean, std=std), data.test)
        rows.append(f"| {label} | {100 * (logp.argmax(1) == y).double().mean().item():.2f}% |")
    lines = [
        "# Test accuracy of one member under each TTA view",
        "",
        f"Run: `{Path(args.run).resolve().relative_to(HERE.parent.parent)}`; training "
        f"augmentation: `{cfg.data.augment or 'none'}`. {dt.date.today()}; "
        f"{environment_line(environment_info(rt.device))}. "
        f"Command: `{command}`.",
        "",
        "| views | test acc |",
        "|---|---:|",
        *rows,
    ]
    atomic_write_text(Path(args.out), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
