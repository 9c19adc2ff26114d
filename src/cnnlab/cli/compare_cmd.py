"""``cnnlab compare``: the case-study comparison in one command."""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

from cnnlab.cli.common import add_set_arg, log, print_json


def register(sub) -> None:
    p = sub.add_parser(
        "compare", help="train several models with their recipes; write a table and a report"
    )
    p.add_argument("--preset", default="case-study", help="recipe set (default case-study)")
    p.add_argument("--models", help="comma-separated subset/extra models, e.g. cnn1,cnn2")
    p.add_argument("--config", metavar="FILE", help="YAML applied on top of every recipe")
    add_set_arg(p, "override a value in every recipe")
    p.add_argument("--seeds", type=int, default=1, help="seeds per model (mean ± std)")
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="trainings run at once, each in its own process with its share of the cores",
    )
    p.add_argument("--epochs", type=int, help="override every recipe's epochs (smoke tests)")
    p.add_argument("--data-dir", metavar="DIR", help="directory holding the data set files")
    p.add_argument("--out", metavar="DIR", help="output directory (default runs/compare/...)")
    p.add_argument("--no-report", action="store_true", help="skip report.html")
    p.add_argument("--json", action="store_true", help="print the results as JSON (last line)")
    p.set_defaults(func=cmd_compare)


def cmd_compare(args) -> int:
    from cnnlab.compare import plan_compare, run_compare
    from cnnlab.reports.results import format_acc

    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    preset, plan = plan_compare(
        args.preset,
        models=models,
        config_file=args.config,
        overrides=args.overrides,
        epochs=args.epochs,
        data_dir=args.data_dir,
    )
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = Path(args.out) if args.out else Path("runs") / "compare" / f"{preset.name}-{stamp}"
    log(f"compare: preset {preset.name}, {len(plan)} models x {args.seeds} seed(s) -> {out}")
    command = "cnnlab " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    results = run_compare(
        preset, plan, out, seeds=args.seeds, jobs=args.jobs, command=command, log=log,
        stream=sys.stderr,
    )  # fmt: skip
    width = max(len(r["model"]) for r in results["rows"])
    for r in results["rows"]:
        print(
            f"{r['model']:<{width}}  {format_acc(r):>16}  {r['params']:>12,} params  "
            f"{r['train_seconds']:>8.0f} s"
        )
    if not args.no_report:
        from cnnlab.reports.html import build_compare_report

        log(f"report: {build_compare_report(out)}")
    if args.json:
        print_json({k: results[k] for k in ("rows", "wall_seconds")} | {"out": str(out)})
    return 0
