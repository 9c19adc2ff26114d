"""Data-practice study on Fashion-MNIST (issue 5; handbook ch. 5 and §12.1-§12.2).

Usage (from the repository root; see ``--help``):

    python benchmarks/data_practice/run_study.py --data-dir ../shared/data/fashion-mnist

Three parts (``--only`` picks some of them):

- imbalance: the training split made long-tailed 100:1 (``data.imbalance``; the test split
  stays balanced); plain training vs random over-sampling vs class-balanced sampling (label
  shuffling) vs cost-sensitive cross-entropy with weights N / (C n_c) (§12.2.2). All arms run
  the same number of epochs, so the re-sampled arms take more steps (the table shows them).
- augment: no augmentation vs crop + flip vs crop + flip + random erasing, on the full set.
- throughput: the median time to augment one batch with the ``best`` resnet20 recipe's
  pipeline vs the median time of one resnet20 training step at batch 100; issue 5 asks for a
  ratio under 10%. The two are timed alternately so both see the same machine load.

Every training is ``cnnlab train`` in a subprocess, one run directory per arm and seed
(``OUT/<part>/<arm>/seed<k>``); finished runs are reused, interrupted ones resumed, and a run
directory made with other settings is refused. Results go to ``results.{json,md}`` next to
this script (``--smoke``: into OUT); every number in them is computed by the run.
``--smoke`` runs the same pipeline on the embedded 6,000-image sample for 1 epoch.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import shlex
import statistics
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any

import torch
import yaml

from cnnlab.config import load_config
from cnnlab.data.augment import build_augmentation
from cnnlab.data.datasets import ImageDataset, load_dataset
from cnnlab.data.imbalance import make_imbalanced
from cnnlab.data.loader import Normalizer
from cnnlab.engine.runtime import resolve_runtime
from cnnlab.engine.tasks import build_task
from cnnlab.evaluation.metrics import balanced_accuracy, per_class_report
from cnnlab.models import create_model
from cnnlab.optim.optimizers import build_optimizer
from cnnlab.optim.schedules import build_scheduler
from cnnlab.recipes import load_preset
from cnnlab.reports.environment import environment_info, environment_line

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PARTS = ("imbalance", "augment", "throughput")
IMBALANCE = {"profile": "long_tail", "imbalance": 100}
CROP_FLIP = [{"name": "random_crop", "padding": 2}, "hflip"]
IMBALANCE_ARMS = {  # arm -> (description, --set overrides on top of the long-tailed data)
    "plain": ("plain training", []),
    "oversample": ("random over-sampling (§12.1.1)", ["data.sampler=oversample"]),
    "class_balanced": ("class-balanced sampling (§12.1.2)", ["data.sampler=class_balanced"]),
    "cost_sensitive": ("cross-entropy, weights N/(C n_c) (§12.2.2)",
                       ["loss.params.class_weights=balanced"]),
}  # fmt: skip
AUGMENT_ARMS = {  # arm -> augmentation pipeline (data.augment)
    "none": [],
    "crop_flip": CROP_FLIP,
    "crop_flip_erasing": [*CROP_FLIP, {"name": "random_erasing", "p": 0.5}],
}
MAX_AUG_SHARE = 0.10  # issue 5: augmenting a batch must cost < 10% of a training step
STEP_BATCH = 100


def _names(text: str, valid: Any, what: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in valid]
    if bad or not names:
        raise SystemExit(f"{what}: unknown {bad or text!r}; valid: {', '.join(valid)}")
    return names


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", help="directory holding the Fashion-MNIST IDX files")
    p.add_argument("--model", default="lenet5", help="model of the trainings (default lenet5)")
    p.add_argument("--epochs", type=int, default=10, help="epochs of the augmentation arms")
    p.add_argument("--imbalance-epochs", type=int, default=20, help="epochs of imbalance arms")
    p.add_argument("--seeds", type=int, default=1, help="training seeds 0..N-1 per arm")
    p.add_argument("--out", help="run directories (default runs/data_practice)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    p.add_argument("--only", default=",".join(PARTS), help="comma list of " + ", ".join(PARTS))
    p.add_argument("--imbalance-arms", default=",".join(IMBALANCE_ARMS), help="comma list")
    p.add_argument("--augment-arms", default=",".join(AUGMENT_ARMS), help="comma list")
    p.add_argument("--repeats", type=int, default=30, help="timed repeats (throughput)")
    p.add_argument("--smoke", action="store_true", help="embedded sample, 1 epoch, seconds")
    args = p.parse_args(argv)
    args.only = _names(args.only, PARTS, "--only")
    args.imbalance_arms = _names(args.imbalance_arms, IMBALANCE_ARMS, "--imbalance-arms")
    args.augment_arms = _names(args.augment_arms, AUGMENT_ARMS, "--augment-arms")
    if min(args.epochs, args.imbalance_epochs, args.seeds, args.threads, args.repeats) < 1:
        raise SystemExit("--epochs, --imbalance-epochs, --seeds, --threads, --repeats must be >= 1")
    if args.smoke:
        args.epochs = args.imbalance_epochs = 1
        args.repeats = min(args.repeats, 5)
        # The shipped sample, named explicitly: a CNNLAB_DATA or cached full copy must not
        # turn the smoke run into a full one.
        args.data_dir = str(resources.files("cnnlab.data") / "embedded" / "fashion-mnist")
    default_out = REPO / "runs" / "data_practice" / ("smoke" if args.smoke else "")
    args.out = Path(args.out).resolve() if args.out else default_out
    return args


def _shown(path: str | Path) -> str:
    """A path as it appears in commands: relative to the repository root when inside it."""
    path = Path(path).resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def _flow(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=1000).strip()


def arm_command(args: argparse.Namespace, part: str, overrides: list[str], epochs: int,
                seed: int, run_dir: Path) -> list[str]:  # fmt: skip
    """The ``cnnlab train`` command of one arm and seed (run with cwd = repository root)."""
    cmd = ["python", "-m", "cnnlab", "train", "--model", args.model, "--epochs", str(epochs),
           "--seed", str(seed), "--out", _shown(run_dir), "--no-progress"]  # fmt: skip
    if args.data_dir:
        cmd += ["--data-dir", _shown(args.data_dir)]
    sets = [f"train.threads={args.threads}", "train.device=cpu"]
    if not args.smoke:
        sets.append("data.allow_sample=false")  # never a silent fall-back to the sample
    if part == "imbalance":
        sets.append(f"data.imbalance={_flow(IMBALANCE)}")
    for item in sets + overrides:
        cmd += ["--set", item]
    return cmd


def run_arm(cmd: list[str], run_dir: Path) -> dict[str, Any]:
    """Train one arm (or reuse / resume its run directory); its metrics and wall time."""
    stamp = run_dir / "study_arm.json"
    done = (run_dir / "metrics.json").is_file()
    if stamp.is_file():
        old = json.loads(stamp.read_text())
        if old["command"] != cmd:
            raise SystemExit(
                f"{run_dir} was made by another command (different settings):\n  "
                f"{shlex.join(old['command'])}\nnow:\n  {shlex.join(cmd)}\n"
                "delete that directory or pass another --out"
            )
        if done:  # NaN: finished by a process that died before stamping its wall time
            metrics = json.loads((run_dir / "metrics.json").read_text())
            wall = old.get("wall_seconds", float("nan"))
            return {"metrics": metrics, "wall_seconds": wall, "reused": True}
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise SystemExit(f"{run_dir} holds files this study did not make; pass another --out")
    run_dir.mkdir(parents=True, exist_ok=True)
    stamp.write_text(json.dumps({"command": cmd}, indent=2) + "\n")
    resume = (run_dir / "checkpoint.safetensors").is_file()
    real = ["train", "--resume", "--out", cmd[cmd.index("--out") + 1], "--no-progress"]
    argv = [sys.executable, "-m", "cnnlab", *(real if resume else cmd[3:])]
    print(f"{'resuming' if resume else 'training'}: {shlex.join(cmd)}", flush=True)
    start = time.perf_counter()
    with open(run_dir / "train.log", "a") as log:
        proc = subprocess.run(argv, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        tail = "".join((run_dir / "train.log").read_text().splitlines(True)[-15:])
        raise SystemExit(f"training failed (exit {proc.returncode}): {shlex.join(cmd)}\n{tail}")
    stamp.write_text(json.dumps({"command": cmd, "wall_seconds": wall}, indent=2) + "\n")
    return {"metrics": json.loads((run_dir / "metrics.json").read_text()),
            "wall_seconds": wall, "reused": False}  # fmt: skip


def _last_step(run_dir: Path) -> int:
    with open(run_dir / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return int(rows[-1]["step"]) if rows else 0


def scores(test: dict[str, Any], where: str) -> dict[str, Any]:
    """Accuracy, per-class recall and balanced accuracy from the test confusion matrix,
    cross-checked with what ``cnnlab train`` stored (handbook §12.2.2: mean per-class recall)."""
    cm = torch.tensor(test["confusion"], dtype=torch.int64)  # (C, C), rows = true class
    acc = int(cm.diag().sum()) / int(cm.sum())
    bal = balanced_accuracy(cm)
    for name, ours in (("acc", acc), ("balanced_acc", bal)):
        if abs(ours - test[name]) > 1e-9:
            raise SystemExit(f"{where}: {name} {test[name]} stored, {ours} from the confusion")
    recall = per_class_report(cm)["recall"]
    return {"acc": acc, "balanced_acc": bal, "recall": recall, "min_recall": min(recall),
            "confusion": cm.tolist(), "test_class_counts": cm.sum(dim=1).tolist()}  # fmt: skip


def run_arms(args: argparse.Namespace, part: str, arms: dict[str, list[str]],
             epochs: int) -> dict[str, list[dict[str, Any]]]:  # fmt: skip
    """Every arm x seed of one part: one record per training."""
    out: dict[str, list[dict[str, Any]]] = {}
    for arm, overrides in arms.items():
        out[arm] = []
        for seed in range(args.seeds):
            run_dir = args.out / part / arm / f"seed{seed}"
            cmd = arm_command(args, part, overrides, epochs, seed, run_dir)
            res = run_arm(cmd, run_dir)
            m = res["metrics"]
            out[arm].append({
                "seed": seed, "command": shlex.join(cmd), "run_dir": _shown(run_dir),
                "reused": res["reused"], "wall_seconds": res["wall_seconds"],
                "train_seconds": m["train_seconds"], "steps": _last_step(run_dir),
                "epochs": m["epochs"], "train_acc": m["train_acc"],
                "train_images_per_s": m["train_images_per_s"], "data_source": m["data_source"],
                **scores(m["test"], str(run_dir / "metrics.json")),
            })  # fmt: skip
    return out


def stat(values: list[float]) -> dict[str, Any]:
    """Mean and sample standard deviation (None for one value) over seeds."""
    std = statistics.stdev(values) if len(values) > 1 else None
    return {"mean": statistics.fmean(values), "std": std, "n": len(values)}


def summarize(records: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, Any]:
    summary = {k: stat([r[k] for r in records]) for k in keys}
    n_classes = len(records[0]["recall"])
    summary["recall"] = [stat([r["recall"][c] for r in records]) for c in range(n_classes)]
    return summary


def _settings(args: argparse.Namespace, epochs: int) -> dict[str, Any]:
    return {"model": args.model, "epochs": epochs, "seeds": args.seeds,
            "threads": args.threads, "data_dir": args.data_dir, "smoke": args.smoke}  # fmt: skip


def imbalance_part(args: argparse.Namespace, dataset: ImageDataset) -> dict[str, Any]:
    """Part 1: plain vs re-sampling vs cost-sensitive training on a 100:1 long tail."""
    _, lt_labels = make_imbalanced(dataset.train_images, dataset.train_labels, **IMBALANCE)
    counts = torch.bincount(lt_labels, minlength=dataset.num_classes).tolist()
    arms = {a: IMBALANCE_ARMS[a][1] for a in args.imbalance_arms}
    runs = run_arms(args, "imbalance", arms, args.imbalance_epochs)
    keys = ("acc", "balanced_acc", "min_recall", "steps", "wall_seconds")
    return {
        "settings": {**_settings(args, args.imbalance_epochs), "imbalance": IMBALANCE},
        "classes": list(dataset.classes),
        "train_class_counts": counts,
        "arms": {a: {"description": IMBALANCE_ARMS[a][0], "overrides": arms[a],
                     "summary": summarize(r, keys), "runs": r} for a, r in runs.items()},
    }  # fmt: skip


def augment_part(args: argparse.Namespace, dataset: ImageDataset) -> dict[str, Any]:
    """Part 2: augmentation ablation on the full (balanced) training split."""
    arms = {a: [f"data.augment={_flow(AUGMENT_ARMS[a])}"] for a in args.augment_arms}
    runs = run_arms(args, "augment", arms, args.epochs)
    keys = ("acc", "train_acc", "steps", "train_images_per_s", "wall_seconds")
    return {
        "settings": _settings(args, args.epochs),
        "classes": list(dataset.classes),
        "arms": {a: {"pipeline": AUGMENT_ARMS[a], "summary": summarize(r, keys), "runs": r}
                 for a, r in runs.items()},
    }  # fmt: skip


def _quantiles_ms(times: list[float]) -> dict[str, float]:
    q = statistics.quantiles(times, n=4) if len(times) > 1 else times * 3
    return {"median_ms": 1000 * statistics.median(times), "p25_ms": 1000 * q[0],
            "p75_ms": 1000 * q[2], "repeats": len(times)}  # fmt: skip


def _step_fn(cfg: Any, dataset: ImageDataset):
    """One training step of the recipe's model as the Trainer does it, on random data."""
    model = create_model(cfg.model.name, num_classes=dataset.num_classes,
                         in_chans=dataset.in_chans, input_size=dataset.image_size,
                         **dict(cfg.model.params))  # fmt: skip
    runtime = resolve_runtime(cfg.train, model)  # sets the thread count; channels_last "auto"
    model = runtime.prepare_model(model).train()
    task = build_task(cfg.loss.name, num_classes=dataset.num_classes,
                      class_counts=dataset.class_counts, **dict(cfg.loss.params))  # fmt: skip
    task = task.to(runtime.device).train()
    optimizer = build_optimizer(model, cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.schedule, total_steps=100_000, steps_per_epoch=600)
    gen = torch.Generator().manual_seed(0)
    size = (STEP_BATCH, dataset.in_chans, dataset.image_size, dataset.image_size)
    x = torch.randn(size, generator=gen)
    if runtime.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)  # as the loader hands batches over
    y = torch.randint(0, dataset.num_classes, (STEP_BATCH,), generator=gen)

    def step() -> None:
        with runtime.autocast():
            loss, _ = task.training_step(model, x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()

    return step, runtime.describe()


def throughput_part(args: argparse.Namespace, dataset: ImageDataset) -> dict[str, Any]:
    """Part 3: augmentation time per batch vs one training step (best resnet20 recipe)."""
    recipe = load_preset("best").recipe_path("resnet20")
    cfg = load_config(recipe, [f"train.threads={args.threads}", "train.device=cpu"])
    step, runtime = _step_fn(cfg, dataset)
    images = dataset.train_images[:10_000]  # statistics only shape the values, not the time
    norm = Normalizer.fit(images)
    aug = build_augmentation(cfg.data.augment, mean=norm.mean, std=norm.std, train_images=images)
    batch = norm(dataset.train_images[:STEP_BATCH])  # (100, 1, 28, 28), as the loader makes it
    gen = torch.Generator()
    aug_t, step_t = [], []
    for i in range(-3, args.repeats):  # 3 warm-up rounds, then timed, alternating
        gen.manual_seed(i + 3)  # the loader re-seeds per batch
        x = batch.clone()  # a fresh batch each time, in case an op works in place
        t0 = time.perf_counter()
        aug(x, gen)
        t1 = time.perf_counter()
        step()
        t2 = time.perf_counter()
        if i >= 0:
            aug_t.append(t1 - t0)
            step_t.append(t2 - t1)
    a, s = _quantiles_ms(aug_t), _quantiles_ms(step_t)
    ratio = a["median_ms"] / s["median_ms"]
    return {
        "recipe": _shown(recipe), "model": cfg.model.name, "pipeline": list(cfg.data.augment),
        "batch_shape": list(batch.shape), "runtime": runtime, "threads": args.threads,
        "augment": a, "step": s, "ratio": ratio, "limit": MAX_AUG_SHARE,
        "passes": ratio < MAX_AUG_SHARE,
    }  # fmt: skip


PART_FUNCS = {"imbalance": imbalance_part, "augment": augment_part, "throughput": throughput_part}
TITLES = {
    "imbalance": "1. Long-tailed training set (100:1): re-sampling vs cost-sensitive loss",
    "augment": "2. Augmentation ablation",
    "throughput": "3. Cost of the `best` resnet20 recipe's augmentation",
}


def _fmt(s: dict[str, Any], digits: int = 4) -> str:
    """``mean`` or ``mean ± std`` (std over seeds)."""
    if s["std"] is None:
        return f"{s['mean']:.{digits}f}"
    return f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(r) + " |" for r in rows), ""]  # fmt: skip


def _head(part: dict[str, Any]) -> list[str]:
    """Provenance of one part: when, where and by which command it was run."""
    return [f"Run {part['date']}, wall time {part['wall_seconds']:.1f} s, data: "
            f"{part['data_source']}.", "", f"Machine: {part['environment_line']}.", "",
            f"Command: `{part['command']}`", ""]  # fmt: skip


def _commands(arms: dict[str, Any]) -> list[str]:
    cmds = [r["command"] for a in arms.values() for r in a["runs"]]
    return ["Trainings (run from the repository root):", "", "```", *cmds, "```", ""]


def _training_line(part: dict[str, Any], extra: str) -> str:
    st = part["settings"]
    seeds = f"{st['seeds']} seed(s)" + (", mean ± std over seeds" if st["seeds"] > 1 else "")
    return (f"Model {st['model']}, {st['epochs']} epoch(s) per arm, {seeds}, {st['threads']} "
            f"thread(s), cnnlab's default optimiser and schedule. {extra}")  # fmt: skip


def imbalance_md(part: dict[str, Any]) -> list[str]:
    counts, arms = part["train_class_counts"], part["arms"]
    test_counts = next(iter(arms.values()))["runs"][0]["test_class_counts"]
    lines = [_training_line(part, "All arms train the same number of epochs; re-sampled "
                            "epochs are larger, so their step counts differ."), ""]  # fmt: skip
    lines += [f"Training split: {sum(counts)} images, largest/smallest class "
              f"{max(counts) / min(counts):.1f}:1. Test split: {sum(test_counts)} images"
              + (f", {test_counts[0]} per class, so accuracy and balanced accuracy coincide."
                 if len(set(test_counts)) == 1 else "."), ""]  # fmt: skip
    rows = [[a, v["description"], _fmt(v["summary"]["steps"], 0), _fmt(v["summary"]["acc"]),
             _fmt(v["summary"]["balanced_acc"]), _fmt(v["summary"]["min_recall"]),
             _fmt(v["summary"]["wall_seconds"], 1)] for a, v in arms.items()]  # fmt: skip
    lines += _table(["arm", "method", "steps", "test acc", "balanced acc",
                     "worst-class recall", "wall time (s)"], rows)  # fmt: skip
    header = ["arm"] + [f"{c} (n={n})" for c, n in zip(part["classes"], counts, strict=True)]
    rows = [[a] + [_fmt(r, 3) for r in v["summary"]["recall"]] for a, v in arms.items()]
    lines += ["Per-class test recall (n = training images of the class):", ""]
    return lines + _table(header, rows) + _commands(arms)


def augment_md(part: dict[str, Any]) -> list[str]:
    arms = part["arms"]
    lines = [_training_line(part, "Full balanced training split."), ""]
    rows = [[a, f"`{_flow(v['pipeline'])}`", _fmt(v["summary"]["acc"]),
             _fmt(v["summary"]["train_acc"]), _fmt(v["summary"]["steps"], 0),
             _fmt(v["summary"]["train_images_per_s"], 0), _fmt(v["summary"]["wall_seconds"], 1)]
            for a, v in arms.items()]  # fmt: skip
    lines += _table(["arm", "data.augment", "test acc", "train acc (last epoch)", "steps",
                     "train img/s", "wall time (s)"], rows)  # fmt: skip
    return lines + _commands(arms)


def throughput_md(part: dict[str, Any]) -> list[str]:
    a, s = part["augment"], part["step"]
    shape = "x".join(map(str, part["batch_shape"]))
    rows = [[f"augment one {shape} batch: `{_flow(part['pipeline'])}`", f"{a['median_ms']:.3f}",
             f"{a['p25_ms']:.3f}", f"{a['p75_ms']:.3f}", str(a["repeats"])],
            [f"one {part['model']} training step (forward, backward, optimiser), "
             f"{part['runtime']}", f"{s['median_ms']:.3f}", f"{s['p25_ms']:.3f}",
             f"{s['p75_ms']:.3f}", str(s["repeats"])]]  # fmt: skip
    lines = [f"Recipe `{part['recipe']}`; timed alternately after 3 warm-up rounds, random "
             "inputs for the step, real images for the augmentation.", ""]  # fmt: skip
    lines += _table(["measurement", "median (ms)", "p25 (ms)", "p75 (ms)", "repeats"], rows)
    verdict = "under" if part["passes"] else "NOT under"
    lines += [f"Augmentation / training step = {100 * part['ratio']:.1f}% of a step: {verdict} "
              f"the {100 * part['limit']:.0f}% limit of issue 5.", ""]  # fmt: skip
    return lines


def write_results(parts_dir: Path, dest: Path) -> dict[str, Any]:
    """results.json and results.md from every part recorded in ``parts_dir``."""
    parts = {n: json.loads((parts_dir / f"{n}.json").read_text())
             for n in PARTS if (parts_dir / f"{n}.json").is_file()}  # fmt: skip
    now = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    results = {"title": "Data-practice study (issue 5)", "written": now, "parts": parts}
    lines = [
        "# Data-practice study on Fashion-MNIST (issue 5)",
        "",
        f"Written {now} by `benchmarks/data_practice/run_study.py`; every number below comes "
        "from the run whose command, date and machine its section names.",
        "",
    ]
    render = {"imbalance": imbalance_md, "augment": augment_md, "throughput": throughput_md}
    for name, part in parts.items():
        lines += [f"## {TITLES[name]}", "", *_head(part), *render[name](part)]
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (dest / "results.md").write_text("\n".join(lines).rstrip() + "\n")
    print(f"wrote {dest / 'results.md'} and results.json")
    return results


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the chosen parts, record each in OUT/parts/, then write the results files."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    command = shlex.join(["python", _shown(__file__), *(sys.argv[1:] if argv is None else argv)])
    dataset = load_dataset("fashion-mnist", args.data_dir, allow_sample=False)
    parts_dir = args.out / "parts"
    parts_dir.mkdir(parents=True, exist_ok=True)
    for name in args.only:
        start = time.perf_counter()
        when = dt.datetime.now().astimezone().isoformat(timespec="seconds")
        env = environment_info()
        part = PART_FUNCS[name](args, dataset)
        part |= {"date": when, "command": command, "environment": env,
                 "environment_line": environment_line(env), "data_source": dataset.source,
                 "wall_seconds": time.perf_counter() - start}  # fmt: skip
        (parts_dir / f"{name}.json").write_text(json.dumps(part, indent=2) + "\n")
    return write_results(parts_dir, args.out if args.smoke else HERE)


if __name__ == "__main__":
    main()
