"""The case study as one command: train several models, each with its own recipe, then
tabulate and report (seed 004's Fashion-MNIST comparison, done honestly).

``plan_compare`` resolves every model's config before anything is trained (so a bad recipe
fails in the first second, not after an hour); ``run_compare`` trains each model for each seed
into its own run directory, skips runs that already finished (a long study can be restarted),
resumes runs that were interrupted, and writes ``results.{json,csv,md}``.
"""

from __future__ import annotations

import contextlib
import json
import signal
import statistics
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from cnnlab.config import (
    ConfigError,
    RunConfig,
    build_config,
    dump_config,
    merge_trees,
    read_yaml,
)
from cnnlab.engine.checkpoint import atomic_write_text
from cnnlab.engine.distributed import threads_per_process
from cnnlab.engine.rundir import RunDir, RunDirError
from cnnlab.inspect.summary import summary
from cnnlab.models.spec import build_model
from cnnlab.recipes import Preset, load_preset
from cnnlab.reports.environment import environment_info
from cnnlab.reports.results import notes_against_claims, write_results
from cnnlab.trained.evaluation import evaluate_run
from cnnlab.training.assemble import Log, load_run_dataset, model_spec_of
from cnnlab.training.spine import run_training


@dataclass(frozen=True)
class PlannedRun:
    model: str
    recipe: str
    config: RunConfig


def plan_compare(
    preset: str,
    *,
    models: Sequence[str] | None = None,
    config_file: str | Path | None = None,
    overrides: Sequence[str] = (),
    epochs: int | None = None,
    data_dir: str | None = None,
) -> tuple[Preset, list[PlannedRun]]:
    """Resolve and validate each model's config: recipe < ``config_file`` < flags."""
    spec = load_preset(preset)
    shared = read_yaml(config_file) if config_file else {}
    extra = [*overrides]
    if epochs is not None:
        extra.append(f"train.epochs={epochs}")
    if data_dir is not None:
        extra.append(f"data.data_dir={data_dir}")
    plan = []
    for model in models or spec.models:
        recipe_path = spec.recipe_path(model)
        tree = read_yaml(recipe_path) if recipe_path else {"model": {"name": model}}
        tree = merge_trees(tree, shared)
        try:
            cfg = build_config(tree, extra)
        except ConfigError as err:
            where = recipe_path or f"model {model!r} (no recipe in preset {preset!r})"
            raise ConfigError(f"{where}: {err}") from None
        if cfg.model.name != model and recipe_path is None:
            raise ConfigError(f"--models {model}: the overrides changed model.name")
        plan.append(PlannedRun(model, f"{preset}/{model}" if recipe_path else "defaults", cfg))
    return spec, plan


def run_compare(
    preset: Preset,
    plan: Sequence[PlannedRun],
    out: str | Path,
    *,
    seeds: int = 1,
    jobs: int = 1,
    command: str = "",
    log: Log = print,
    stream: TextIO | None = None,
) -> dict[str, Any]:
    """Train every planned run for ``seeds`` seeds (``jobs`` at a time, each in its own
    process with its share of the cores); write and return the results."""
    if seeds < 1:
        raise ConfigError(f"--seeds: expected >= 1, found {seeds}")
    if jobs < 1:
        raise ConfigError(f"--jobs: expected >= 1, found {jobs}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start, started = time.perf_counter(), time.strftime("%Y-%m-%dT%H:%M:%S")
    work = []
    for k, run in enumerate(plan, 1):
        for s in range(seeds):
            cfg = run.config.replace(seed=run.config.seed + s)
            rel = str(Path("runs") / run.model / f"seed{cfg.seed}")
            prefix = f"[{k}/{len(plan)}] {run.model} seed {cfg.seed}: "
            work.append((k - 1, rel, cfg, prefix))
    earlier = _earlier_work(out, [rel for _, rel, _, _ in work])
    done = _run_all(work, out, jobs, log, stream)
    for _, rel, cfg, prefix in work:
        rd = RunDir(out / rel)
        acc = _train_set_accuracy(rd, cfg, _prefixed(log, prefix))
        has_env = rd.file(RunDir.ENV).is_file()  # runs of older cnnlab versions lack it
        threads = rd.read_json(RunDir.ENV).get("torch_threads") if has_env else None
        done[rel] = {**done[rel], "train_set_acc": acc, "threads": threads}
    rows = []
    for k, run in enumerate(plan):
        per_seed = [(rel, done[rel]) for i, rel, _, _ in work if i == k]
        rows.append(_aggregate(run, per_seed))
        log(f"[{k + 1}/{len(plan)}] {run.model}: test acc {_fmt_acc(rows[-1])}")
    first_metrics = done[work[0][1]]
    results = {
        "preset": preset.name,
        "description": preset.description,
        "command": command,
        "dataset": first_metrics["dataset"],
        "data_source": first_metrics["data_source"],
        "env": environment_info(),
        "started": started,
        "wall_seconds": time.perf_counter() - start,
        **earlier,
        "seeds": seeds,
        "rows": rows,
    }
    results["notes"] = notes_against_claims(preset.claims, rows, out)
    write_results(out, results)
    return results


def _train_set_accuracy(rd: RunDir, cfg: RunConfig, log: Log) -> float:
    """The final model's accuracy on the whole training set, in eval mode (no dropout, no
    augmentation), cached in the run directory. The case study's claims look like training
    accuracy; the running accuracy of the last epoch (dropout on, weights still moving)
    understates it, so the comparison needs this figure."""
    if rd.file(RunDir.TRAIN_EVAL).is_file():
        return float(rd.read_json(RunDir.TRAIN_EVAL)["train_acc"])
    log("evaluating the final model on the training set")
    m = evaluate_run(rd.path, data_dir=cfg.data.data_dir, log=log, split="train")
    saved = {k: m[k] for k in ("train_acc", "train_loss", "num_images")}
    atomic_write_text(rd.file(RunDir.TRAIN_EVAL), json.dumps(saved, indent=2) + "\n")
    return float(m["train_acc"])


def _earlier_work(out: Path, rels: Sequence[str]) -> dict[str, int]:
    """How many runs an earlier invocation finished or started: the wall time of this one then
    covers only part of the study (per-model training seconds survive resuming)."""
    dirs = [RunDir(out / rel) for rel in rels]
    finished = sum(d.file(RunDir.METRICS).is_file() for d in dirs)
    started = sum(d.checkpoint.is_file() and not d.file(RunDir.METRICS).is_file() for d in dirs)
    return {"reused_runs": finished, "resumed_runs": started}


def _run_all(work, out: Path, jobs: int, log: Log, stream) -> dict[str, dict[str, Any]]:
    """Train (or reuse) every run; in parallel worker processes when ``jobs`` > 1."""
    if jobs == 1:
        done = {}
        for _, rel, cfg, prefix in work:
            run_log = _prefixed(log, prefix)
            run_log(f"training ({cfg.model.name}, {cfg.train.epochs} epochs)")
            done[rel] = _train_or_reuse(cfg, out / rel, run_log, stream, prefix)
        return done
    import multiprocessing as mp

    # Longest first: with the longest training queued last, one worker would train it alone
    # while the other cores idle (on the case-study preset that is ResNet-20's 20 epochs).
    costs = _estimated_costs(work)
    order = sorted(range(len(work)), key=lambda i: -costs[i])
    tasks = [(rel, cfg.to_dict(), str(out / rel), prefix) for _, rel, cfg, prefix in
             (work[i] for i in order)]  # fmt: skip
    log(f"{len(work)} trainings, {jobs} at a time, longest first")
    ctx = mp.get_context("spawn")
    with _terminate_on_sigterm(), ctx.Pool(
        jobs, initializer=_init_worker, initargs=(threads_per_process(jobs),),
        maxtasksperchild=1,
    ) as pool:  # fmt: skip
        # Leaving this block in any way (a failed run, Ctrl-C, SIGTERM) terminates the workers:
        # Pool.__exit__ calls terminate(). Checkpoints are written atomically, so a killed run
        # resumes from its last epoch when the study is started again.
        results = pool.imap_unordered(_worker_task, tasks, chunksize=1)
        return {rel: metrics for rel, metrics in results}  # a failed run re-raises here


@contextlib.contextmanager
def _terminate_on_sigterm():
    """Turn SIGTERM into SystemExit while the pool lives, so the ``with`` blocks unwind and
    the workers are terminated too (the default SIGTERM action would kill only this process
    and leave them training). Only the main thread can install signal handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _estimated_costs(work) -> list[float]:
    """Relative training cost of each run, multiply-adds per image x epochs: enough to order
    the queue (the runs of one study share their data set, which is read once here)."""
    datasets: dict[str, Any] = {}
    costs = []
    for _, _, cfg, _ in work:
        key = repr((cfg.data.dataset, cfg.data.data_dir, cfg.data.allow_sample, cfg.data.params))
        if key not in datasets:
            datasets[key] = load_run_dataset(cfg, log=lambda msg: None)
        spec = model_spec_of(cfg, datasets[key])
        size = (spec["in_chans"], spec["input_size"], spec["input_size"])
        costs.append(float(summary(build_model(spec), size).macs) * cfg.train.epochs)
    return costs


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _worker_task(task: tuple[str, dict[str, Any], str, str]) -> tuple[str, dict[str, Any]]:
    rel, *args = task
    return rel, _worker(*args)


def _worker(cfg_dict: dict[str, Any], run_dir: str, prefix: str) -> dict[str, Any]:
    import sys

    cfg = build_config(cfg_dict)

    log = _prefixed(lambda msg: print(msg, file=sys.stderr, flush=True), prefix)
    return _train_or_reuse(cfg, Path(run_dir), log, None, prefix, live=False)


def _prefixed(log: Log, prefix: str) -> Log:
    """``log`` with every line naming its run (``[k/n] model seed s: ``)."""
    return lambda msg: log(f"{prefix}{msg}")


def _fmt_acc(row: dict[str, Any]) -> str:
    std = row["test_acc_std"]
    return f"{row['test_acc']:.4f}" + (f" ± {std:.4f}" if std is not None else "")


def _train_or_reuse(
    cfg: RunConfig,
    run_dir: Path,
    log: Log,
    stream: TextIO | None,
    prefix: str,
    live: bool | None = None,
) -> dict[str, Any]:
    rd = RunDir(run_dir)
    if rd.file(RunDir.CONFIG).is_file():
        saved = rd.file(RunDir.CONFIG).read_text(encoding="utf-8")
        if saved != dump_config(cfg):
            raise RunDirError(
                f"{run_dir} holds a run with a different config; use another --out "
                "(nothing was overwritten)"
            )
        if rd.file(RunDir.METRICS).is_file():
            log(f"already finished, reusing {run_dir}")
            return rd.read_json(RunDir.METRICS)
        if rd.checkpoint.is_file():
            log(f"resuming the interrupted run in {run_dir}")
            return run_training(
                cfg, run_dir, resume=True, log=log, stream=stream, progress_prefix=prefix
            )
    return run_training(cfg, run_dir, log=log, stream=stream, progress_prefix=prefix)


def _aggregate(run: PlannedRun, per_seed: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    ms = [m for _, m in per_seed]

    def mean(key: str) -> float:
        return statistics.fmean(m[key] for m in ms)

    accs = [m["test_acc"] for m in ms]
    return {
        "model": run.model,
        "recipe": run.recipe,
        "seeds": [m["seed"] for m in ms],
        "test_acc": statistics.fmean(accs),
        "test_acc_std": statistics.stdev(accs) if len(accs) > 1 else None,
        "test_acc_per_seed": accs,
        "test_loss": mean("test_loss"),
        "train_acc": statistics.fmean(m["train_acc"] or 0.0 for m in ms),
        "train_set_acc": statistics.fmean(m["train_set_acc"] for m in ms)
        if all(m.get("train_set_acc") is not None for m in ms)
        else None,
        "params": ms[0]["params"],
        "macs": ms[0]["macs"],
        "train_seconds": mean("train_seconds"),
        "seconds_per_epoch": mean("seconds_per_epoch"),
        "infer_images_per_s": mean("infer_images_per_s"),
        "epochs": ms[0]["epochs"],
        # threads of the process that trained it last (a resumed run may have had others)
        "threads": ms[0].get("threads"),
        "precision": ms[0]["precision"],
        "runs": [rel for rel, _ in per_seed],
    }
