"""``cnnlab ensemble``: train the members of a YAML ensemble config and combine them (ch. 13)."""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

from cnnlab.cli.common import add_set_arg, log, print_json


def register(sub) -> None:
    p = sub.add_parser(
        "ensemble",
        help="train ensemble members from one YAML file and score the combination rules",
        description="Train (or reuse) every member into OUT/members/<name>/, then score every "
        "group under every rule (averaging, weighted, voting, stacking, with/without TTA); "
        "writes results.json and results.md. Schema: see cnnlab.ensembles.generate.",
    )
    p.add_argument("--config", metavar="FILE", required=True, help="ensemble YAML file")
    p.add_argument("--out", metavar="DIR", help="output directory (default runs/ensemble/...)")
    p.add_argument("--data-dir", metavar="DIR", help="directory holding the data set files")
    p.add_argument("--epochs", type=int, help="override every member's epochs (smoke tests)")
    add_set_arg(p, "override a run-config value in every member")
    p.add_argument("--json", action="store_true", help="print the results as JSON (last line)")
    p.set_defaults(func=cmd_ensemble)


def cmd_ensemble(args) -> int:
    from cnnlab.cli.errors import UsageError
    from cnnlab.ensembles.combine import EnsembleError
    from cnnlab.ensembles.generate import load_plan
    from cnnlab.ensembles.workflow import run_ensemble

    try:
        plan = load_plan(args.config, overrides=args.overrides, epochs=args.epochs,
                         data_dir=args.data_dir)  # fmt: skip
        stamp = time.strftime("%Y%m%d-%H%M%S")
        out = Path(args.out) if args.out else Path("runs") / "ensemble" / f"{plan.name}-{stamp}"
        groups, rules = ", ".join(plan.groups), ", ".join(plan.combine.rules)
        log(f"ensemble {plan.name}: {len(plan.members)} run(s), groups {groups}, rules {rules}")
        log(f"output: {out}")
        command = "cnnlab " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        results = run_ensemble(plan, out, command=command, log=log, stream=sys.stderr)
    except EnsembleError as err:
        raise UsageError(str(err)) from None
    for r in results["rows"]:
        tta = " +TTA" if r["tta"] else ""
        abst = f"  ({r['test_abstentions']} abstained)" if r["test_abstentions"] else ""
        print(f"{r['group']:<12} {r['rule'] + tta:<18} test acc {100 * r['test_acc']:6.2f}%"
              f"  NLL {r['test_nll']:.4f}{abst}")  # fmt: skip
    log(f"results: {out / 'results.md'}")
    if args.json:
        rows = [{k: r[k] for k in ("group", "rule", "tta", "test_acc", "test_nll",
                                   "test_abstentions")} for r in results["rows"]]  # fmt: skip
        print_json({"rows": rows, "out": str(out)})
    return 0
