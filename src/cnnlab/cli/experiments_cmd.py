"""``cnnlab experiments list|run|book``: the handbook's claims as experiments with verdicts."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from cnnlab.cli.common import log, print_json


def register(sub) -> None:
    p = sub.add_parser(
        "experiments", help="reproduce the handbook's claims as experiments with computed verdicts"
    )
    esub = p.add_subparsers(dest="experiments_command", metavar="ACTION", required=True)
    ls = esub.add_parser("list", help="one line per experiment: name, section, kind, claim")
    ls.add_argument("--kind", choices=("exact", "trend"), help="only exact checks or trends")
    ls.add_argument("--json", action="store_true", help="print the descriptions as JSON")
    ls.set_defaults(func=cmd_list)
    r = esub.add_parser("run", help="run experiments; write result.json + report.html each")
    r.add_argument("names", nargs="+", metavar="NAME", help="experiment names, or all/exact/trend")
    r.add_argument("--quick", action="store_true", help="small settings: minutes, not the book")
    r.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)  # tests: seconds
    r.add_argument("--seeds", type=int, help="seeds per trend experiment (default: per scale)")
    r.add_argument("--data-dir", metavar="DIR", help="directory holding Fashion-MNIST")
    r.add_argument("--out", metavar="DIR", help="output directory (default runs/experiments/SCALE)")
    r.add_argument("--jobs", type=int, default=1, help="experiments run at once (processes)")
    r.add_argument("--force", action="store_true", help="rerun experiments that already finished")
    r.add_argument("--json", action="store_true", help="print the verdicts as JSON (last line)")
    r.set_defaults(func=cmd_run)
    b = esub.add_parser(
        "book", help="build the results book (Markdown + HTML) from result.json files"
    )
    b.add_argument("dir", metavar="DIR", help="directory searched for result.json files")
    b.add_argument("--out", default="docs/experiments.md", help="Markdown path (HTML next to it)")
    b.set_defaults(func=cmd_book)


def _duration(exp) -> str:
    if exp.kind == "exact":
        return "instant"
    quick, full = exp.minutes
    return f"~{quick:g}/{full:g} min"


def cmd_list(args) -> int:
    from cnnlab.experiments import ordered

    exps = [e for e in ordered() if args.kind in (None, e.kind)]
    if args.json:
        print_json([e.describe() for e in exps])
        return 0
    width = max(len(e.name) for e in exps)
    for e in exps:
        print(f"{e.name:<{width}}  §{e.section:<10} {e.kind:<5}  {_duration(e):<15} {e.claim}")
    return 0


def _command(args, scale: str, out: Path) -> str:
    """The command line that reproduces this run (recorded in every result.json)."""
    parts = ["cnnlab", "experiments", "run", *args.names]
    if scale != "full":
        parts.append(f"--{scale}")
    if args.seeds is not None:
        parts += ["--seeds", str(args.seeds)]
    if args.data_dir:
        parts += ["--data-dir", args.data_dir]
    parts += ["--out", str(out)]
    if args.jobs != 1:
        parts += ["--jobs", str(args.jobs)]
    return " ".join(shlex.quote(p) for p in parts)


def cmd_run(args) -> int:
    from cnnlab.cli.errors import UsageError
    from cnnlab.experiments import ExperimentError, run_experiments

    if args.quick and args.smoke:
        raise UsageError("--quick and --smoke exclude each other")
    scale = "smoke" if args.smoke else "quick" if args.quick else "full"
    out = Path(args.out) if args.out else Path("runs") / "experiments" / scale
    command = _command(args, scale, out)
    try:
        results = run_experiments(
            args.names,
            scale=scale,
            seeds=args.seeds,
            out=out,
            data_dir=args.data_dir,
            jobs=args.jobs,
            command=command,
            log=log,
            force=args.force,
        )
    except ExperimentError as err:
        raise UsageError(str(err)) from None
    width = max(len(r["name"]) for r in results)
    for r in results:
        print(f"{r['name']:<{width}}  {r['verdict']:<15} {r['wall_seconds']:>7.1f} s")
    log(f"results in {out}; book: cnnlab experiments book {out}")
    if args.json:
        print_json(
            {
                "out": str(out),
                "results": [
                    {
                        k: r[k]
                        for k in ("name", "section", "kind", "verdict", "reason", "wall_seconds")
                    }
                    for r in results
                ],
            }
        )
    return 0


def cmd_book(args) -> int:
    from cnnlab.cli.errors import UsageError
    from cnnlab.experiments import ExperimentError, build_book

    try:
        md, html = build_book(args.dir, args.out)
    except ExperimentError as err:
        raise UsageError(str(err)) from None
    print(f"{md}\n{html}")
    return 0
