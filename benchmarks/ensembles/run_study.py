"""Ensemble study on Fashion-MNIST (handbook ch. 13): one model vs ensembles, same budget.

Usage (from the repository root; hours on a 2-core CPU with the defaults):

    python benchmarks/ensembles/run_study.py --data-dir ../shared/data --budget-epochs 15 \
        --augment crop_flip --jobs 2

Arms, all with SGD (momentum 0.9, eta0 = --lr) on the same 90/10 train/validation split and
the same training augmentation (``--augment crop_flip``: 2-pixel padded random crops and
horizontal flips, the transformations the TTA views undo; ``none`` for no augmentation):

- single: one model trained for the whole budget (N epochs, cosine annealing);
- seed ensemble: K models (different seeds), N // K epochs each: the same total budget;
- snapshot ensemble: one run of N epochs with cyclic cosine annealing (eq. 13.1, M cycles),
  the last m cycle-end snapshots averaged (§13.2.1);
- TTA (§13.1.1): every member and ensemble again with test-time views (default flip_shift);
- stacking (§13.2.2): a logistic-regression meta-model on the seed members' validation outputs,
  with out-of-fold scores; also weighted averaging and plurality/majority voting.

Everything runs through ``cnnlab ensemble``'s code: the script writes the ensemble config it
uses (``OUT/study.yaml``, runnable with ``cnnlab ensemble --config``), trains into ``OUT``
(finished runs are reused when restarted), and writes ``OUT/results.{json,md}`` plus a summary
``OUT/study.md`` (copied to ``benchmarks/ensembles/results.md`` unless ``--smoke``, with
``OUT/results.{md,json}`` as ``members.{md,json}``).
With ``--augment none`` those copies are named ``results_noaug.md`` and ``members_noaug.*``.
``--jobs J`` trains J members at a time in worker processes (one thread each by default) before
the combination step, which then reuses them; the results are the same as sequential training.
``--smoke`` runs the same pipeline on tiny synthetic data in seconds.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
# Training augmentations: crop_flip teaches the invariances the flip_shift TTA views rely on
# (a 2-pixel padded crop is a shift by up to 2 pixels, like the TTA shifts).
AUGMENT: dict[str, list[Any]] = {
    "none": [],
    "crop_flip": [{"name": "random_crop", "padding": 2}, "hflip"],
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", help="directory holding fashion-mnist/ (or the IDX files)")
    p.add_argument("--budget-epochs", type=int, default=15, help="epochs of the single model (N)")
    p.add_argument("--members", type=int, default=3, help="seed-ensemble size K")
    p.add_argument("--cycles", type=int, default=5, help="snapshot cycles M")
    p.add_argument("--keep", type=int, default=3, help="snapshots averaged (last m)")
    p.add_argument("--model", default="cnn2", help="model name (default cnn2 with BN)")
    p.add_argument("--lr", type=float, default=0.1, help="eta0 (handbook: 0.1 or 0.2)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--tta", default="flip_shift", help="TTA preset: flip, shift, flip_shift, none")
    p.add_argument(
        "--augment",
        choices=sorted(AUGMENT),
        default="crop_flip",
        help="training augmentation of every member (default crop_flip)",
    )
    p.add_argument("--jobs", type=int, default=1, help="members trained at a time")
    p.add_argument("--out", help="output directory (default benchmarks/ensembles/runs/...)")
    p.add_argument("--threads", type=int, help="torch intra-op threads")
    p.add_argument("--smoke", action="store_true", help="tiny synthetic data, seconds")
    args = p.parse_args(argv)
    if args.jobs < 1:
        p.error(f"--jobs: expected >= 1, found {args.jobs}")
    return args


def study_config(args: argparse.Namespace) -> dict[str, Any]:
    """The ``cnnlab ensemble`` config of the study (also written to OUT/study.yaml)."""
    n, k = args.budget_epochs, args.members
    if n < k:
        raise SystemExit(f"--budget-epochs {n} must be >= --members {k} (N // K epochs each)")
    if not 1 <= args.keep <= args.cycles:
        raise SystemExit(f"--keep {args.keep} must be in [1, --cycles {args.cycles}]")
    params = {"norm": "bn"} if args.model in ("cnn1", "cnn2") else {}
    data: dict[str, Any] = {"batch_size": args.batch_size, "val_split": 0.1}
    if AUGMENT[args.augment]:
        data["augment"] = AUGMENT[args.augment]
    if args.smoke:
        tiny = {"train_size": 320, "test_size": 80, "image_size": 12, "num_classes": 4}
        data |= {"dataset": "synthetic", "batch_size": 32, "params": tiny}
    else:
        data |= {"dataset": "fashion-mnist", "allow_sample": False}  # no silent fallback
    base = {
        "model": {"name": args.model, "params": params},
        "data": data,
        "optim": {"name": "sgd", "lr": args.lr, "params": {"momentum": 0.9}},
        "train": {"epochs": n, "progress": not args.smoke},
    }
    members = [
        {"name": "single", "schedule": {"name": "cosine"}},
        {"name": "seed", "seeds": list(range(k)), "schedule": {"name": "cosine"},
         "train": {"epochs": n // k}},
        {"name": "snap", "schedule": {"name": "cosine_restarts", "params": {"cycles": args.cycles}},
         "snapshots": {"last": args.keep}},
    ]  # fmt: skip
    tta: Any = False if args.tta == "none" else {"views": args.tta, "shift": 2}
    return {
        "name": "fmnist-ensemble-study" if not args.smoke else "smoke-ensemble-study",
        "description": f"single model ({n} epochs) vs {k}-seed ensemble ({n // k} epochs each) "
        f"vs snapshot ensemble (last {args.keep} of {args.cycles} cycles in {n} epochs), "
        f"{args.model}, SGD eta0={args.lr}, training augmentation: {args.augment}",
        "base": base,
        "members": members,
        "groups": {"single": ["single"], "seeds": ["seed"], "snapshots": ["snap"]},
        "combine": {"rules": ["mean", "weighted_nll", "plurality", "majority", "stacking"],
                    "stacking": {"meta": "logistic", "folds": 5}, "tta": tta},
    }  # fmt: skip


LINES = [  # (label, group, rule, tta)
    ("single model", "single", "mean", False),
    ("single model + TTA", "single", "mean", True),
    ("seed ensemble, averaging", "seeds", "mean", False),
    ("seed ensemble, averaging + TTA", "seeds", "mean", True),
    ("seed ensemble, weighted (val NLL)", "seeds", "weighted_nll", False),
    ("seed ensemble, plurality vote", "seeds", "plurality", False),
    ("seed ensemble, majority vote", "seeds", "majority", False),
    ("seed ensemble, stacking (out-of-fold)", "seeds", "stacking", False),
    ("snapshot ensemble, averaging", "snapshots", "mean", False),
    ("snapshot ensemble, averaging + TTA", "snapshots", "mean", True),
    ("snapshot ensemble, stacking (out-of-fold)", "snapshots", "stacking", False),
]


def verdict(rows: dict[tuple[str, str, bool], dict[str, Any]], num_test: int) -> str:
    """Does the best ensemble beat the best single model of the same training budget?

    Every arm trains for the same number of epochs, so the comparison is between the best
    line of the single model (with or without TTA) and the best ensemble line.
    """
    table = {(g, r, t): row for (g, r, t), row in rows.items()
             if any((g, r, t) == (lg, lr, lt) for _, lg, lr, lt in LINES)}  # fmt: skip
    labels = {(g, r, t): label for label, g, r, t in LINES}
    singles = [k for k in table if k[0] == "single"]
    ensembles = [k for k in table if k[0] != "single"]
    if not singles or not ensembles:
        return "Verdict: not measured (the single model or the ensembles are missing)."
    best_single = max(singles, key=lambda k: table[k]["test_acc"])
    best_ens = max(ensembles, key=lambda k: table[k]["test_acc"])
    a, b = table[best_single]["test_acc"], table[best_ens]["test_acc"]
    word = "beats" if b > a else "does not beat"
    return (
        f"Verdict: the best ensemble ({labels[best_ens]}, {100 * b:.2f}%) {word} the best single "
        f"model of the same training budget ({labels[best_single]}, {100 * a:.2f}%): "
        f"{100 * (b - a):+.2f} points ({round((b - a) * num_test):+d} of {num_test} test images)."
    )


def summary(results: dict[str, Any], commands: list[str], suffix: str = "") -> str:
    from cnnlab.reports.environment import environment_line

    rows = {(r["group"], r["rule"], r["tta"]): r for r in results["rows"]}
    lines = [
        "# Ensemble study (handbook ch. 13)",
        "",
        results["description"],
        "",
        f"Data: {results['dataset']} ({results['data_source']}), {results['num_val']} validation "
        f"and {results['num_test']} test images. Wall time {results['wall_seconds'] / 60:.1f} min "
        f"(trainings one after another). {environment_line(results['env'])}.",
        "",
        "| approach | test acc | test NLL | abstained | train s | infer s | notes |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for label, group, rule, tta in LINES:
        r = rows.get((group, rule, tta))
        if r is None:
            continue
        note = f"OOF val acc {100 * r['oof_acc']:.2f}%" if "oof_acc" in r else ""
        lines.append(
            f"| {label} | {100 * r['test_acc']:.2f}% | {r['test_nll']:.4f} "
            f"| {r['test_abstentions']} | {r['train_seconds']:.0f} | {r['infer_seconds']:.1f} "
            f"| {note} |"
        )
    lines += ["", verdict(rows, results["num_test"])]
    members = f"members{suffix}"
    lines += ["", f"Every member and every rule: [{members}.md]({members}.md) (`cnnlab "
              f"ensemble`'s own results.md; also {members}.json).", "",
              "Commands:", "", *[f"    {c}" for c in commands], ""]  # fmt: skip
    return "\n".join(lines)


def pretrain(tree: dict[str, Any], args: argparse.Namespace, out: Path, log) -> None:
    """Train the members ``args.jobs`` at a time, each in a fresh process with
    ``args.threads`` (default 1) threads, exactly as ``run_ensemble`` would train them one after
    another (same configs, same run directories, snapshot saving), so it then reuses them."""
    import multiprocessing as mp

    from cnnlab.ensembles.generate import build_plan

    names = [m.name for m in build_plan(tree, data_dir=args.data_dir).members]
    tasks = [(tree, args.data_dir, str(out), name, args.threads or 1) for name in names]
    log(f"training {len(names)} members, {args.jobs} at a time")
    with mp.get_context("spawn").Pool(args.jobs, maxtasksperchild=1) as pool:
        for name in pool.imap_unordered(_train_member, tasks, chunksize=1):
            log(f"member {name} trained")


def _train_member(task: tuple[dict[str, Any], str | None, str, str, int]) -> str:
    """Worker: train (or reuse, or resume) one member of the study's plan."""
    import torch

    from cnnlab.ensembles.generate import build_plan
    from cnnlab.ensembles.workflow import train_member

    tree, data_dir, out, name, threads = task
    torch.set_num_threads(threads)
    member = next(m for m in build_plan(tree, data_dir=data_dir).members if m.name == name)
    train_member(member, Path(out), log=lambda msg: None, prefix=f"{name}: ")
    return name


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from cnnlab.ensembles.generate import build_plan
    from cnnlab.ensembles.workflow import run_ensemble

    if args.threads:
        torch.set_num_threads(args.threads)
    tree = study_config(args)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    tag = "" if args.augment == "none" else f"-{args.augment}"
    default = f"smoke-{stamp}" if args.smoke else f"study-N{args.budget_epochs}{tag}"
    out = Path(args.out) if args.out else HERE / "runs" / default
    out.mkdir(parents=True, exist_ok=True)
    (out / "study.yaml").write_text(yaml.safe_dump(tree, sort_keys=False), encoding="utf-8")
    plan = build_plan(tree, data_dir=args.data_dir)
    command = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])])
    cli = f"cnnlab ensemble --config {out / 'study.yaml'} --out {out}"
    cli += f" --data-dir {args.data_dir}" if args.data_dir else ""

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    if args.jobs > 1:
        pretrain(tree, args, out, log)
    results = run_ensemble(plan, out, command=command, log=log, stream=sys.stderr)
    suffix = "_noaug" if args.augment == "none" else ""  # the first study's copies
    text = summary(results, [command, f"(equivalently) {cli}"], suffix)
    (out / "study.md").write_text(text, encoding="utf-8")
    (out / "study.json").write_text(json.dumps({"args": vars(args)}, indent=2), encoding="utf-8")
    if not args.smoke:
        shutil.copyfile(out / "study.md", HERE / f"results{suffix}.md")
        shutil.copyfile(out / "results.md", HERE / f"members{suffix}.md")
        shutil.copyfile(out / "results.json", HERE / f"members{suffix}.json")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
