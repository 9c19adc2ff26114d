"""Time to accuracy: the `fast` recipes against the plain loop's epoch, in one invocation.

Issue 22. Absolute seconds on this machine drift by 2x from day to day, so every time here
is also given in *plain-epoch units*: the training seconds of one epoch of the plain PyTorch
loop (benchmarks/trainer/plain_loop.py: cnn2, batch 100, Adam 1e-3, default threads = both
cores) measured in the same invocation. Each round runs the plain loop once and every recipe
for one seed, in fresh processes, reversing the order every other round (ABBA), so drift in
the machine's load hits every run alike. A recipe is trained with ``cnnlab train --config``
(exactly what users get) and, where its target says so, evaluated with ``cnnlab eval --tta
flip`` (2 views). Time to X is the *training* time of the recipe's fixed schedule (metrics'
``train_seconds``: the training loop, evaluation excluded) whose final model reaches X; the
median over the target's seeds. Training FLOPs = 3 x MACs per image x images seen.

The targets, their seeds and inference, and the ablations (each technique removed from the
94% recipe, or with ``added: true`` put into it; ``--ablation-base`` changes another target)
are read from configs/fast/preset.yaml. Writes results.json and results.md (and
the headline table into README.md between its markers)::

    python benchmarks/time_to_accuracy/run.py --data-dir ../shared/data     # the full study
    python benchmarks/time_to_accuracy/run.py --quick --out /tmp/tta        # smoke test
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PLAIN = ROOT / "benchmarks" / "trainer" / "plain_loop.py"
sys.path.insert(0, str(HERE))

from tta_report import write_reports  # noqa: E402  (the tables, next to this file)

from cnnlab.engine.atomic import atomic_write_text  # noqa: E402


def sample_dir() -> str:
    """The directory holding the embedded 6,000/1,000-image sample (``fashion-mnist/``)."""
    import cnnlab.data

    return str(Path(cnnlab.data.__file__).parent / "embedded")


def load_plan() -> dict[str, Any]:
    from cnnlab.config import read_yaml
    from cnnlab.recipes import load_preset

    preset = load_preset("fast")
    meta = read_yaml(preset.directory / "preset.yaml")
    return {"preset": preset, "targets": meta["targets"], "ablations": meta.get("ablations", {}),
            "ablation_base": meta.get("ablation_base")}  # fmt: skip


def run_plain(data_dir: str) -> dict[str, Any]:
    cmd = [sys.executable, str(PLAIN), "--model", "cnn2", "--epochs", "1", "--data-dir", data_dir]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    epoch = json.loads(out.strip().splitlines()[-1])["epochs"][0]
    return {"seconds": epoch["seconds"], "test_acc": epoch["test_acc"]}


def cnnlab(*args: str) -> dict[str, Any]:
    """Run ``python -m cnnlab ARGS --json``; its last stdout line, parsed."""
    cmd = [sys.executable, "-m", "cnnlab", *args, "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_recipe(recipe: Path, seed: int, sets: list[str], tta: str | None, data_dir: str,
               quick: bool, n_train: int) -> dict[str, Any]:  # fmt: skip
    """Train one recipe for one seed in a fresh process, then evaluate its saved model
    (with ``--tta`` where the target uses it); accuracies, seconds, images, FLOPs."""
    extra = ["--set", "train.epochs=1"] if quick else []
    for item in sets:
        extra += ["--set", item]
    with tempfile.TemporaryDirectory() as tmp:
        run = f"{tmp}/run"
        m = cnnlab("train", "--config", str(recipe), "--data-dir", data_dir, "--seed", str(seed),
                   "--no-progress", "--out", run, *extra)  # fmt: skip
        views = cnnlab("eval", run, *(["--tta", tta] if tta else []))
    images = n_train * m["epochs"]
    return {
        "seed": seed,
        "test_acc": m["test_acc"],
        "tta_acc": views["test_acc"] if tta else None,
        "train_seconds": m["train_seconds"],
        "epochs": m["epochs"],
        "images_seen": images,
        "macs_per_image": m["macs"],
        "train_flops": 3 * m["macs"] * images,
        "params": m["params"],
        "precision": m["precision"],
        "eval_seconds": views["num_images"] / views["infer_images_per_s"],
    }


def train_set_size(data_dir: str) -> int:
    """Images per epoch of the fast recipes (the whole training split: no validation split)."""
    from cnnlab.data.datasets import load_dataset

    return int(load_dataset("fashion-mnist", data_dir).train_labels.numel())


def schedule(plan: dict[str, Any], targets: list[str], ablations: list[str],
             ablation_seeds: int) -> list[list[tuple[str, ...]]]:  # fmt: skip
    """Rounds of jobs: ('plain',), ('target', name, seed), ('ablation', name, seed)."""
    rounds = max([plan["targets"][t]["seeds"] for t in targets] + [ablation_seeds])
    out = []
    for r in range(rounds):
        jobs: list[tuple[str, ...]] = [("plain",)]
        jobs += [("target", t, r) for t in targets if r < plan["targets"][t]["seeds"]]
        jobs += [("ablation", a, r) for a in ablations if r < ablation_seeds]
        out.append(jobs if r % 2 == 0 else jobs[::-1])
    return out


def names(arg: str | None, everything: dict[str, Any]) -> list[str]:
    """A ``--targets``/``--ablations`` value: a comma list, 'none', or (not given) all."""
    if arg is None:
        return list(everything)
    return [] if arg == "none" else arg.split(",")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=None, help="directory with the Fashion-MNIST files")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: the embedded sample, 1 epoch per recipe, 1 seed")  # fmt: skip
    ap.add_argument("--targets", default=None,
                    help="comma list, or 'none' (default: all in preset.yaml)")  # fmt: skip
    ap.add_argument("--ablations", default=None, help="comma list, or 'none'")
    ap.add_argument("--ablation-seeds", type=int, default=1)
    ap.add_argument("--ablation-base", default=None,
                    help="the target the ablations change (default: preset.yaml's)")  # fmt: skip
    ap.add_argument("--out", default=str(HERE), help="where results.json / results.md go")
    ap.add_argument("--resume", action="store_true",
                    help="keep the jobs done in OUT/results.partial.json")  # fmt: skip
    args = ap.parse_args()
    if not args.quick and args.data_dir is None:
        ap.error("--data-dir is required (or --quick for the embedded sample)")
    data_dir = args.data_dir or sample_dir()
    plan = load_plan()
    targets = names(args.targets, plan["targets"])
    ablations = names(args.ablations, plan["ablations"])
    for name in targets + ablations:
        if name not in plan["targets"] and name not in plan["ablations"]:
            ap.error(f"unknown target or ablation {name!r}")
    if args.ablation_base is not None:
        if args.ablation_base not in plan["targets"]:
            ap.error(f"--ablation-base: unknown target {args.ablation_base!r}; expected one of "
                     f"{', '.join(plan['targets'])}")  # fmt: skip
        plan["ablation_base"] = args.ablation_base
    # the project README's headline comes from the full study written to its home only
    home = not args.quick and Path(args.out).resolve() == HERE
    if home and any(x is not None for x in (args.targets, args.ablations, args.ablation_base)):
        # a subset would replace the whole study's tables (and the README's) by its rows alone
        ap.error("--targets/--ablations/--ablation-base change the study: pass --out "
                 f"(not {HERE}), or run the whole study there")  # fmt: skip
    if args.quick:
        plan["targets"] = {k: {**v, "seeds": 1} for k, v in plan["targets"].items()}
    results: dict[str, Any] = {"plain": [], "targets": {t: [] for t in targets},
                               "ablations": {a: [] for a in ablations}}  # fmt: skip
    directory = plan["preset"].directory
    n_train = train_set_size(data_dir)
    started = time.strftime("%Y-%m-%d %H:%M")
    command = " ".join(["python", *sys.argv])
    partial = Path(args.out) / "results.partial.json"
    partial.parent.mkdir(parents=True, exist_ok=True)
    done: list[str] = []
    if args.resume and partial.exists():
        try:
            prev = json.loads(partial.read_text())
            results, done, started = prev["results"], prev["done"], prev["started"]
            before = prev["command"]
        except (ValueError, KeyError) as e:
            sys.exit(f"{partial}: not a partial study of this script ({e!r}); remove it")
        if before.replace(" --resume", "") != command.replace(" --resume", ""):
            sys.exit(f"{partial} is from another command: {before!r}")
    for r, jobs in enumerate(schedule(plan, targets, ablations, args.ablation_seeds)):
        for job in jobs:
            key = f"{r}:{':'.join(map(str, job))}"
            if key in done:
                continue
            print(f"round {r + 1}: {' '.join(map(str, job))}", file=sys.stderr, flush=True)
            run_job(job, plan, results, directory, data_dir, args.quick, n_train)
            done.append(key)
            # after every job, so that a crash or a stop loses one job, not the study
            saved = {"command": command, "started": started, "done": done, "results": results}
            atomic_write_text(partial, json.dumps(saved, indent=1))
    write_reports(Path(args.out), plan, results, command=command, started=started,
                  quick=args.quick, readmes=(ROOT / "README.md",) if home else ())  # fmt: skip
    partial.unlink(missing_ok=True)


def run_job(job: tuple[str, ...], plan: dict[str, Any], results: dict[str, Any],
            directory: Path, data_dir: str, quick: bool, n_train: int) -> None:  # fmt: skip
    """Run one scheduled job and append its row to ``results``."""
    if job[0] == "plain":
        results["plain"].append(run_plain(data_dir))
        return
    kind, name, seed = job
    recipe, spec, sets = name, plan["targets"].get(name, {}), []
    if kind == "ablation":  # the base recipe with the technique taken out
        recipe = plan["ablation_base"]
        spec = {**plan["targets"][recipe], **plan["ablations"][name]}
        sets = list(spec.get("set", []))
    tta = spec.get("tta", "none")
    row = run_recipe(directory / f"{recipe}.yaml", int(seed), sets,
                     None if tta == "none" else tta, data_dir, quick, n_train)  # fmt: skip
    results["targets" if kind == "target" else "ablations"][name].append(row)
    print(json.dumps(row), file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
