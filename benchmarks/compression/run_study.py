"""Compression study on Fashion-MNIST models (Handbook chapter 4, Part D.2 rows 4.1-4.5).

Takes two trained runs, the case study's small VGG and a ResNet (``cnnlab train --model
vgg_small ...``, ``cnnlab train --model resnet20 ...``), and runs every compression method on
them through ``cnnlab.compression.run_compression`` (the engine of ``cnnlab compress``): each
study is one compression config, its models saved in their real formats and timed side by
side with the original. The summary checks three targets:

- pruning + quantisation (VGG): >= 4x smaller on disk with <= 0.5 points of accuracy lost;
- int8 post-training quantisation (VGG): >= 1.5x the fp32 throughput at batch 256 on this CPU;
- distillation: a student within 1 point of its teacher with <= 1/4 of its parameters.

Usage::

    python benchmarks/compression/run_study.py --vgg runs/vgg --resnet runs/resnet20 \
        --data-dir /path/to/fashion-mnist --out runs/compression
    python benchmarks/compression/run_study.py --smoke --out /tmp/study-smoke   # seconds

``--smoke`` trains two tiny runs on synthetic 28x28 data (1 epoch) unless runs are given, and
shrinks every epoch count to 1 and the timing to 3 repetitions: it checks the plumbing and
gives real timing figures (same input shape), not meaningful accuracies. ``--summarize``
writes the summary from the studies finished so far (a long study is summarised while its
remaining studies still wait) and names the ones not run yet. ``--retime`` times the saved
models of the finished studies again (studies run two at a time on two cores are timed under
load; run.sh re-times all of them once the machine is quiet) and runs nothing else.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import yaml


def studies(smoke: bool) -> list[dict[str, Any]]:
    """(name, which run, compression config) of every study."""
    e = 1 if smoke else 2  # fine-tuning epochs per step
    distill_epochs = 1 if smoke else None  # None: the teacher run's own epoch count
    ft = {"lr_scale": 0.1}
    return [
        {"name": "vgg-prune-kmeans", "run": "vgg", "config": {"finetune": ft, "steps": [
            {"name": "prune_magnitude", "sparsity": 0.8, "iterations": 3, "finetune_epochs": e},
            {"name": "kmeans", "bits": 4, "finetune_epochs": e, "codebook_grad": "mean"}]}},
        {"name": "vgg-int8", "run": "vgg", "config": {"steps": [
            {"name": "int8", "calibration_batches": 10}]}},
        {"name": "vgg-lowrank", "run": "vgg", "config": {"finetune": ft, "steps": [
            {"name": "lowrank", "energy": 0.9, "finetune_epochs": e}]}},
        *[{"name": f"vgg-filters-{c}", "run": "vgg", "config": {"finetune": ft, "steps": [
            {"name": "prune_channels", "criterion": c, "ratio": 0.5, "iterations": 2,
             "finetune_epochs": e}]}} for c in ("l1", "apoz", "taylor")],
        {"name": "vgg-kmeans-vs-pq", "run": "vgg", "config": {"finetune": ft, "steps": [
            {"name": "product_quantize", "sub": 4, "k": 16, "finetune_epochs": e,
             "codebook_grad": "mean"}]}},
        *[{"name": f"vgg-binary-{m}", "run": "vgg", "config": {"steps": [
            {"name": "binarize", "mode": m, "epochs": 1 if smoke else 5}]}}
          for m in ("binaryconnect", "bnn", "xnor")],
        # "xnor" above binarises the weights only (with alpha: the paper's Binary-Weight-Network);
        # this one binarises the inputs too, XNOR-Net proper (without the K scaling map).
        {"name": "vgg-binary-xnor-inputs", "run": "vgg", "config": {"steps": [
            {"name": "binarize", "mode": "xnor", "binary_inputs": True,
             "epochs": 1 if smoke else 5}]}},
        {"name": "resnet-prune", "run": "resnet", "config": {"finetune": ft, "steps": [
            {"name": "prune_magnitude", "sparsity": 0.8, "iterations": 3, "finetune_epochs": e},
            {"name": "kmeans", "bits": 4, "finetune_epochs": e, "codebook_grad": "mean"}]}},
        {"name": "resnet-filters-l1", "run": "resnet", "config": {"finetune": ft, "steps": [
            {"name": "prune_channels", "criterion": "l1", "ratio": 0.5, "finetune_epochs": e}]}},
        {"name": "resnet-int8", "run": "resnet", "config": {"steps": [{"name": "int8"}]}},
        {"name": "resnet-distill", "run": "resnet", "config": {"steps": [
            {"name": "distill", "temperature": 4.0, "alpha": 0.9, "epochs": distill_epochs,
             "width": 0.45}]}},
        {"name": "resnet-student-scratch", "run": "resnet", "config": {"steps": [
            {"name": "distill", "temperature": 1.0, "alpha": 0.0, "epochs": distill_epochs,
             "width": 0.45}]}},
    ]  # fmt: skip


def train_smoke_runs(out: Path) -> dict[str, Path]:
    """Two tiny synthetic 28x28 runs (1 epoch) standing in for the real ones."""
    from cnnlab.cli.main import main

    runs = {}
    for key, model in (("vgg", "vgg_small"), ("resnet", "resnet20")):
        run = out / "smoke-runs" / key
        if not (run / "checkpoint.safetensors").is_file():
            argv = ["train", "--dataset", "synthetic", "--model", model, "--epochs", "1",
                    "--no-progress", "--set", "data.params.train_size=512",
                    "--set", "data.params.test_size=256", "--set", "data.batch_size=64",
                    "--out", str(run)]  # fmt: skip
            if main(argv) != 0:
                raise SystemExit(f"smoke run {key} failed")
        runs[key] = run
    return runs


def run_all(args: argparse.Namespace) -> list[dict[str, Any]]:
    from cnnlab.compression.compress_run import run_compression
    from cnnlab.engine.checkpoint import atomic_write_text

    out = Path(args.out)
    runs = {"vgg": args.vgg, "resnet": args.resnet}
    if args.smoke and not (args.vgg and args.resnet):
        runs = {**train_smoke_runs(out), **{k: Path(v) for k, v in runs.items() if v}}
    measure = {"timing": not args.no_timing, "repeats": 3 if args.smoke else 9,
               "threads": args.threads}  # fmt: skip
    results = []
    for study in selected(studies(args.smoke), args.only):
        config = {**study["config"], "measure": measure}
        dest = out / study["name"]
        run = str(runs[study["run"]])
        cfg_path = out / "configs" / f"{study['name']}.yaml"
        command = ["cnnlab", "compress", run, "--config", str(cfg_path), "--out", str(dest)]
        command += ["--data-dir", args.data_dir] if args.data_dir else []
        key = {"config": config, "run": run}
        finished = _finished(dest, key)
        if finished and args.retime:
            print(f"== {study['name']}: timing its saved models again", file=sys.stderr, flush=True)
            finished = _retime(dest, key)
        if finished:
            print(f"== {study['name']}: finished before, reusing {dest}", file=sys.stderr)
            results.append(finished)
            continue
        if args.retime:
            print(f"== {study['name']}: not run yet (--retime)", file=sys.stderr)
            continue
        if args.summarize:
            print(f"== {study['name']}: not run yet (--summarize)", file=sys.stderr)
            continue
        cfg_path.parent.mkdir(parents=True, exist_ok=True)
        cfg_path.write_text(yaml.safe_dump(config, sort_keys=False))
        print(f"== {study['name']}: {shlex.join(command)}", file=sys.stderr, flush=True)
        start = time.perf_counter()
        report = run_compression(
            runs[study["run"]],
            cfg_path,
            out=dest,
            data_dir=args.data_dir,
            log=lambda m: print(f"   {m}", file=sys.stderr, flush=True),
        )
        result = {"study": study["name"], "command": shlex.join(command),
                  "seconds": time.perf_counter() - start, "rows": report["rows"],
                  "env": report["env"]}  # fmt: skip
        saved = {**result, "config": config, "run": run}
        atomic_write_text(dest / "study.json", json.dumps(saved, default=str))
        results.append(result)
    return results


def selected(all_studies: list[dict[str, Any]], only: list[str] | None) -> list[dict[str, Any]]:
    """The studies named by ``--only``, in the order given (run.sh starts the long,
    target-bearing ones first), or every study; an unknown name is a usage error."""
    if not only:
        return all_studies
    by_name = {s["name"]: s for s in all_studies}
    unknown = [n for n in only if n not in by_name]
    if unknown:
        raise SystemExit(f"--only: unknown study {', '.join(unknown)}; known: {', '.join(by_name)}")
    return [by_name[n] for n in dict.fromkeys(only)]


def _finished(dest: Path, key: dict[str, Any]) -> dict[str, Any] | None:
    """The saved result of a study that already ran with this config on this run (a long
    study can be split with --only across processes, or restarted, without redoing work)."""
    saved = dest / "study.json"
    if not saved.is_file():
        if (dest / "report.json").exists():
            raise SystemExit(f"{dest} holds an unfinished or foreign study; remove it or use --out")
        return None
    result = json.loads(saved.read_text())
    if {k: result.pop(k) for k in key} != json.loads(json.dumps(key, default=str)):
        raise SystemExit(f"{dest} holds this study with another config or run; use another --out")
    return result


def _retime(dest: Path, key: dict[str, Any]) -> dict[str, Any]:
    """Time a finished study's saved models again (``retime_compression``) and update its
    study.json; the result as ``_finished`` returns it."""
    from cnnlab.compression.compress_run import retime_compression
    from cnnlab.engine.checkpoint import atomic_write_text

    report = retime_compression(dest, log=lambda m: print(f"   {m}", file=sys.stderr, flush=True))
    saved = json.loads((dest / "study.json").read_text())
    saved.update(rows=report["rows"], env=report["env"], retimed=report["retimed"])
    atomic_write_text(dest / "study.json", json.dumps(saved, default=str))
    return _finished(dest, key)


def _final(results, name):
    return next((r["rows"] for r in results if r["study"] == name), None)


def targets(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The three targets of the brief, each with the measured figures and a verdict."""
    out = []
    rows = _final(results, "vgg-prune-kmeans")
    if rows:
        last = rows[-1]
        out.append({"target": "pruning+kmeans: >= 4x smaller, <= 0.5 points lost",
                    "measured": f"{last['size_ratio']:.2f}x, {100 * last['delta_acc']:+.2f} points",
                    "met": last["size_ratio"] >= 4 and last["delta_acc"] >= -0.005})  # fmt: skip
    rows = _final(results, "vgg-int8")
    if rows and rows[-1].get("speedup_b256"):
        s = rows[-1]["speedup_b256"]
        out.append(
            {
                "target": "int8 >= 1.5x fp32 throughput at batch 256 (vgg_small)",
                "measured": f"{s:.2f}x ({rows[0]['throughput_b256']:,.0f} -> "
                f"{rows[-1]['throughput_b256']:,.0f} img/s)",
                "met": s >= 1.5,
            }
        )
    rows = _final(results, "resnet-distill")
    scratch = _final(results, "resnet-student-scratch")
    if rows:
        teacher, student = rows[0], rows[-1]
        gap = teacher["test_acc"] - student["test_acc"]
        frac = student["params"] / teacher["params"]
        extra = (
            f"; same student without distillation: {100 * scratch[-1]['test_acc']:.2f}%"
            if scratch
            else ""
        )
        out.append({"target": "distilled student within 1 point of teacher at <= 1/4 params",
                    "measured": f"gap {100 * gap:.2f} points at {frac:.3f} of the params{extra}",
                    "met": gap <= 0.01 and frac <= 0.25})  # fmt: skip
    return out


def write_summary(out: Path, results: list[dict[str, Any]], argv: list[str], *,
                  smoke: bool = False, only: list[str] | None = None) -> None:  # fmt: skip
    checks = targets(results)
    lines = ["# Compression study", "", f"Command: `{shlex.join(argv)}`", ""]
    if results:
        env = results[0]["env"]
        lines += [f"torch {env['torch']}, {env['threads']} thread(s), {env['cpu']}, "
                  f"quantized engine {env['quantized_engine']}", ""]  # fmt: skip
    lines += [
        "| study | model | bytes | x smaller | non-zero | MACs | b1 ms | b256 img/s | "
        "speed-up | acc | Δ points |",
        "|" + "---|" * 11,
    ]
    for r in results:
        for row in r["rows"]:
            delta = "" if row["delta_acc"] is None else f"{100 * row['delta_acc']:+.2f}"
            lines.append(
                f"| {r['study']} | {row['step']} | {row['bytes']:,} | {row['size_ratio']:.2f} | "
                f"{row['nonzero']:,} | {row['macs']:,} | {row.get('latency_b1_ms') or 0:.3f} | "
                f"{row.get('throughput_b256') or 0:,.0f} | {row.get('speedup_b256') or 0:.2f} | "
                f"{100 * row['test_acc']:.2f} | {delta} |"
            )
    lines += ["", "## Targets", ""]
    lines += [f"- {'MET' if c['met'] else 'NOT MET'}: {c['target']} — {c['measured']}"
              for c in checks]  # fmt: skip
    done = {r["study"] for r in results}
    pending = [s["name"] for s in selected(studies(smoke), only) if s["name"] not in done]
    if pending:
        lines += ["", f"Not run yet: {', '.join(pending)} (targets that need them are not judged)."]
    lines += ["", "## Commands", ""] + [f"- `{r['command']}` ({r['seconds']:.0f} s)"
                                        for r in results]  # fmt: skip
    (out / "study.md").write_text("\n".join(lines) + "\n")
    (out / "study.json").write_text(
        json.dumps({"argv": argv, "targets": checks, "results": results}, indent=2, default=str)
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vgg", help="trained vgg_small run directory")
    p.add_argument("--resnet", help="trained ResNet run directory (e.g. resnet20)")
    p.add_argument("--data-dir", help="Fashion-MNIST directory (default: where the runs read it)")
    p.add_argument("--out", default="runs/compression", help="output directory (models: large)")
    p.add_argument("--threads", type=int, help="torch threads while timing (default: torch's)")
    p.add_argument("--only", nargs="*", help="run only these studies, in this order (see study.md)")
    p.add_argument("--smoke", action="store_true", help="tiny plumbing run (see docstring)")
    p.add_argument(
        "--summarize",
        action="store_true",
        help="only summarise the studies finished so far; run nothing",
    )
    p.add_argument("--no-timing", action="store_true", help="skip latency/throughput timing")
    p.add_argument("--retime", action="store_true",
                   help="time the finished studies' saved models again (on a quiet machine) and "
                   "update their reports; runs nothing else")  # fmt: skip
    p.add_argument("--publish", metavar="DIR",
                   help="copy the summary and every finished study's report and config to DIR "
                   "(the committed benchmarks/compression/results)")  # fmt: skip
    args = p.parse_args(argv)
    if not args.smoke and not (args.vgg and args.resnet):
        p.error("--vgg and --resnet are required (or --smoke)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = run_all(args)
    argv = [sys.argv[0], *(argv if argv is not None else sys.argv[1:])]
    write_summary(out, results, argv, smoke=args.smoke, only=args.only)
    if args.publish:
        publish(out, [r["study"] for r in results], Path(args.publish))
    print((out / "study.md").read_text())
    return 0


def publish(out: Path, names: list[str], dest: Path) -> None:
    """Copy study.md/json and each named study's report.{md,json} and config to ``dest``
    (the compressed models themselves, tens of MB, stay in ``out``)."""
    import shutil

    dest.mkdir(parents=True, exist_ok=True)
    for name in ("study.md", "study.json"):
        shutil.copy2(out / name, dest / name)
    for name in names:
        (dest / name).mkdir(exist_ok=True)
        for report in ("report.md", "report.json"):
            shutil.copy2(out / name / report, dest / name / report)
        shutil.copy2(out / "configs" / f"{name}.yaml", dest / name / "config.yaml")


if __name__ == "__main__":
    sys.exit(main())
