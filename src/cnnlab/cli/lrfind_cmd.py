"""``cnnlab lr-find``: the learning-rate range test (handbook §11.2.2; Smith 2017)."""

from __future__ import annotations

from pathlib import Path

from cnnlab.cli.common import (
    add_config_args,
    config_from_args,
    log,
    print_json,
    shortcut_overrides,
)


def register(sub) -> None:
    p = sub.add_parser("lr-find", help="sweep the learning rate, plot loss vs LR, suggest one")
    p.add_argument("--model", help="model name (default: the config's)")
    p.add_argument("--dataset", help="data set name")
    p.add_argument("--seed", type=int)
    add_config_args(p)
    p.add_argument("--start", type=float, default=1e-7, help="first learning rate (1e-7)")
    p.add_argument("--end", type=float, default=10.0, help="last learning rate (10)")
    p.add_argument("--steps", type=int, default=100, help="batches in the sweep (100)")
    p.add_argument("--out", metavar="PNG", default="lr_find.png", help="plot file")
    p.add_argument("--json", action="store_true", help="print the result as JSON (last line)")
    p.set_defaults(func=cmd_lr_find)


def cmd_lr_find(args) -> int:
    from cnnlab.optim.lr_finder import plot_lr_find
    from cnnlab.training.spine import run_lr_find

    extra = shortcut_overrides(
        args, {"model": "model.name", "dataset": "data.dataset", "data_dir": "data.data_dir",
               "seed": "seed"}
    )  # fmt: skip
    cfg = config_from_args(args, extra)
    result = run_lr_find(cfg, start=args.start, end=args.end, steps=args.steps, log=log)
    path = plot_lr_find(result, Path(args.out))
    print(f"suggested learning rate {result.suggestion:.3g} ({result.reason}); plot: {path}")
    if args.json:
        print_json({"suggestion": result.suggestion, "reason": result.reason,
                    "diverged": result.diverged, "lrs": result.lrs, "losses": result.losses,
                    "plot": str(path)})  # fmt: skip
    return 0
