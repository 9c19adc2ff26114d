"""Run experiments into result directories: ``<out>/<name>/result.json`` + ``report.html``.

Each experiment gets its own directory holding the trainings' run directories (``runs/``),
``result.json`` (claim, section, settings, the measured numbers per seed, the verdict and its
reason, seeds, wall time, the command and the hardware line) and a self-contained HTML page.
A finished experiment is reused when it is asked for again with the same scale, seeds and
settings, so an interrupted ``run all`` can simply be restarted.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cnnlab.engine.checkpoint import atomic_write_text
from cnnlab.engine.distributed import threads_per_process
from cnnlab.engine.rundir import clean_json
from cnnlab.experiments.base import SCALES, Context, Experiment, Log, load_all, ordered, section_key
from cnnlab.experiments.claims_page import write_page
from cnnlab.registry import RegistryError
from cnnlab.reports.environment import environment_info, environment_line

SCHEMA = "cnnlab-experiment/1"
RESULT = "result.json"
PAGE = "report.html"
GROUPS = ("all", "exact", "trend")


class ExperimentError(ValueError):
    """Bad experiment names, options or result directories; the message says which."""


def select(names: Sequence[str]) -> list[Experiment]:
    """Experiments for the names given (``all``, ``exact`` and ``trend`` select groups)."""
    if not names:
        raise ExperimentError("name at least one experiment (or all, exact, trend)")
    reg = load_all()
    chosen: list[str] = []
    for name in names:
        if name in GROUPS:
            chosen += [n for n in reg.names() if name == "all" or reg.get(n).kind == name]
            continue
        try:
            reg.get(name)
        except RegistryError as err:
            raise ExperimentError(f"{err} (or a group: {', '.join(GROUPS)})") from None
        chosen.append(name)
    return ordered(list(dict.fromkeys(chosen)))


def make_context(
    exp: Experiment, scale: str, seeds: int | None, out: Path, data_dir: str | None, log: Log
) -> Context:
    if scale not in SCALES:
        raise ExperimentError(f"scale must be one of {', '.join(SCALES)}, got {scale!r}")
    if seeds is not None and seeds < 1:
        raise ExperimentError(f"--seeds: expected >= 1, got {seeds}")
    n = seeds if seeds is not None else exp.default_seeds(scale)
    seed_list = list(range(n)) if exp.kind == "trend" else []
    return Context(scale, exp.settings_for(scale), seed_list, out / exp.name, data_dir, log)


def _reusable(path: Path, ctx: Context) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None
    same = (
        old.get("scale") == ctx.scale
        and old.get("seeds") == ctx.seeds
        and old.get("settings") == json.loads(json.dumps(ctx.settings))
    )
    if not same:
        raise ExperimentError(
            f"{path.parent} holds results of other settings (scale {old.get('scale')}, seeds "
            f"{old.get('seeds')}); use --force to replace them or another --out"
        )
    return old


def run_experiment(
    exp: Experiment,
    *,
    scale: str = "quick",
    seeds: int | None = None,
    out: str | Path,
    data_dir: str | None = None,
    command: str = "",
    log: Log = print,
    force: bool = False,
) -> dict[str, Any]:
    """Run one experiment (or reuse its finished result) and write result.json and the page."""
    ctx = make_context(exp, scale, seeds, Path(out), data_dir, log)
    result_path = ctx.out_dir / RESULT
    if force and ctx.out_dir.exists():
        shutil.rmtree(ctx.out_dir)
    old = None if force else _reusable(result_path, ctx)
    if old is not None:
        log(f"{exp.name}: already finished, reusing {result_path}")
        return old
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    started, t0 = time.strftime("%Y-%m-%dT%H:%M:%S"), time.perf_counter()
    measured, verdict = exp.execute(ctx)
    env = environment_info()
    result = {
        "schema": SCHEMA,
        **exp.describe(),
        "scale": scale,
        "quick": scale != "full",
        "settings": ctx.settings,
        "seeds": ctx.seeds,
        "measured": measured,
        **verdict.to_dict(),
        "wall_seconds": time.perf_counter() - t0,
        "started": started,
        "command": command,
        "hardware": environment_line(env),
        "env": env,
        "data_dir": data_dir,
    }
    result = clean_json(json.loads(json.dumps(result, default=str)))
    atomic_write_text(result_path, json.dumps(result, indent=2) + "\n")

    write_page(result, ctx.out_dir / PAGE)
    log(f"{exp.name}: {result['verdict']} ({result['wall_seconds']:.1f} s) - {result['reason']}")
    return result


def run_experiments(
    names: Sequence[str],
    *,
    scale: str = "quick",
    seeds: int | None = None,
    out: str | Path,
    data_dir: str | None = None,
    jobs: int = 1,
    command: str = "",
    log: Log = print,
    force: bool = False,
) -> list[dict[str, Any]]:
    """Run the named experiments in handbook order, ``jobs`` at a time."""
    if jobs < 1:
        raise ExperimentError(f"--jobs: expected >= 1, got {jobs}")
    exps = select(names)
    for exp in exps:  # bad scale/seeds fail before anything runs
        make_context(exp, scale, seeds, Path(out), data_dir, log)
    opts = {
        "scale": scale,
        "seeds": seeds,
        "out": str(out),
        "data_dir": data_dir,
        "command": command,
        "force": force,
    }
    if jobs == 1 or len(exps) == 1:
        return [run_experiment(e, log=log, **opts) for e in exps]
    return _run_parallel([e.name for e in exps], opts, jobs, log)


def _run_parallel(names: list[str], opts: dict[str, Any], jobs: int, log: Log) -> list[dict]:
    """One worker process per experiment at a time, each with its share of the cores."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(
        jobs,
        mp_context=mp.get_context("spawn"),
        initializer=_init_worker,
        initargs=(threads_per_process(jobs),),
    ) as pool:
        log(f"{len(names)} experiments, {jobs} at a time")
        futures = [pool.submit(_worker, name, opts) for name in names]
        return [f.result() for f in futures]  # in handbook order; errors re-raise here


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _worker(name: str, opts: dict[str, Any]) -> dict[str, Any]:
    import sys

    def log(msg: str) -> None:
        print(f"[{name}] {msg}", file=sys.stderr, flush=True)

    return run_experiment(load_all().get(name), log=log, **opts)


def find_results(root: str | Path) -> list[dict[str, Any]]:
    """Every result.json under ``root`` (recursively), in handbook order."""
    root = Path(root)
    if not root.is_dir():
        raise ExperimentError(f"{root}: not a directory")
    results = []
    for path in sorted(root.rglob(RESULT)):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ExperimentError(f"{path}: not valid JSON ({err})") from None
        if data.get("schema") == SCHEMA:
            data["_path"] = str(path)
            results.append(data)
    if not results:
        raise ExperimentError(f"no experiment results (result.json) under {root}")
    return sorted(
        results, key=lambda r: (section_key(r["section"]), r["kind"] != "exact", r["name"])
    )
