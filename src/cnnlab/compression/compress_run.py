"""``run_compression``: a training run + a list of steps -> saved compressed models + report.

Config (YAML or a mapping)::

    finetune:            # optional; how fine-tuning after a step trains
      lr: 1.0e-4         # default: the run's lr x lr_scale (0.1)
      optimizer: sgd     # default: the run's; also weight_decay, schedule (constant), batch_size
    measure:             # optional
      timing: true       # CPU latency (batch 1) and throughput (batch 256), interleaved
      repeats: 7
      batch_sizes: [1, 256]
      threads: null      # torch threads while timing (default: torch's)
    steps:               # applied in order, each to the previous step's output
      - {name: prune_magnitude, sparsity: 0.8, iterations: 3, finetune_epochs: 1}
      - {name: kmeans, bits: 4}

Each step's output is saved in its real storage format (``NN-step.safetensors``), evaluated on
the test set, reloaded with ``load_compressed`` and evaluated again; all models (the original
first) are then timed side by side. report.json and report.md hold the table.
"""

from __future__ import annotations

import json
import platform
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.compression.compression_report import add_ratios, write_reports
from cnnlab.compression.context import FINETUNE_KEYS, CompressContext
from cnnlab.compression.measure import count_parameters, model_macs, time_models
from cnnlab.compression.state import CompressionError, CompressState
from cnnlab.compression.steps import Step, build_step
from cnnlab.compression.storage import load_compressed, save_compressed
from cnnlab.config import ConfigError, read_yaml
from cnnlab.engine.checkpoint import CheckpointError
from cnnlab.trained.run import load

Log = Callable[[str], None]
TOP_KEYS = ("steps", "finetune", "measure")
#: Where trainings save a checkpoint after every epoch, so an interrupted compression run
#: continues (same command, same --out) from the last finished epoch; removed at the end.
RESUME_DIR = "resume"
MEASURE_DEFAULTS: dict[str, Any] = {"timing": True, "repeats": 7, "batch_sizes": [1, 256],
                                    "threads": None}  # fmt: skip


def read_config(source: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """The compression config with its steps built (so bad options fail before any data)."""
    where = str(source) if not isinstance(source, Mapping) else "compression config"
    tree = dict(source) if isinstance(source, Mapping) else read_yaml(source)
    unknown = sorted(set(tree) - set(TOP_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; "
                          f"valid: {', '.join(TOP_KEYS)}")  # fmt: skip
    steps = tree.get("steps")
    if not isinstance(steps, list) or not steps:
        raise ConfigError(f"{where}: 'steps' must be a non-empty list of {{name: ..., ...}}")
    bad = sorted(set(tree.get("finetune") or {}) - set(FINETUNE_KEYS))
    if bad:
        raise ConfigError(f"{where}: finetune: unknown key(s) {', '.join(bad)}; "
                          f"valid: {', '.join(FINETUNE_KEYS)}")  # fmt: skip
    measure = {**MEASURE_DEFAULTS, **(tree.get("measure") or {})}
    bad = sorted(set(measure) - set(MEASURE_DEFAULTS))
    if bad:
        raise ConfigError(f"{where}: measure: unknown key(s) {', '.join(bad)}; "
                          f"valid: {', '.join(MEASURE_DEFAULTS)}")  # fmt: skip
    try:
        built = [build_step(s, f"{where}: steps[{i}]") for i, s in enumerate(steps)]
    except CompressionError as err:
        raise ConfigError(str(err)) from None
    names = [s.name for s in built]
    if "int8" in names[:-1]:
        raise ConfigError(f"{where}: steps[{names.index('int8')}]: int8 must be the last step "
                          "(nothing can train or re-encode an int8 model)")  # fmt: skip
    return {"steps": built, "raw_steps": steps, "finetune": dict(tree.get("finetune") or {}),
            "measure": measure}  # fmt: skip


def load_run(run_dir: str | Path, data_dir: str | None = None):
    """(config, model with the weights the run reports, checkpoint metadata) of a training run,
    through ``cnnlab.load``. The config's pretrained checkpoint is cleared: a compression step
    starts from the trained network itself."""
    try:
        run = load(run_dir, data_dir=data_dir, device="cpu")
    except CheckpointError as err:
        raise CompressionError(str(err)) from None
    cfg = replace(run.config, finetune=replace(run.config.finetune, checkpoint=None))
    return cfg, run.fresh_model(), run.meta


def _reload_check(path: Path, model: nn.Module, ctx: CompressContext) -> tuple[float, float]:
    loaded, _ = load_compressed(path)
    x, _ = next(iter(ctx.data.test))
    with torch.inference_mode():
        diff = float((model(x.cpu()) - loaded(x.cpu())).abs().max())
    return ctx.accuracy(loaded), diff


def _measure(path, state: CompressState, model: nn.Module, ctx, base_acc) -> dict[str, Any]:
    structure = state.int8["float_model"] if state.is_int8 else model
    params, nonzero = count_parameters(model)
    acc = ctx.accuracy(model)
    reload_acc, diff = _reload_check(path, model, ctx)
    return {"file": path.name, "params": params, "nonzero": nonzero, "bytes": path.stat().st_size,
            "macs": model_macs(structure, ctx.input_size), "test_acc": acc,
            "delta_acc": None if base_acc is None else acc - base_acc,
            "reload_acc": reload_acc, "reload_max_abs_diff": diff}  # fmt: skip


def _save(out: Path, index: int, name: str, state: CompressState, model, data_meta, history):
    path = out / f"{index:02d}-{name}.safetensors"
    save_compressed(path, model, spec=state.spec, encodings=state.encodings, int8=state.int8,
                    data=data_meta, extra={"steps": history})  # fmt: skip
    return path


def _time_rows(rows, models, input_size, measure, log) -> None:
    threads = torch.get_num_threads()
    if measure["threads"]:
        torch.set_num_threads(int(measure["threads"]))
    try:
        log(f"timing {len(models)} models, {measure['repeats']} interleaved repetitions")
        times = time_models(models, input_size, batch_sizes=measure["batch_sizes"],
                            repeats=int(measure["repeats"]))  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    for row, name in zip(rows, models, strict=True):
        t = times[name]
        row["latency_b1_ms"] = 1000 * t[1] if 1 in t else None
        row["throughput_b256"] = 256 / t[256] if 256 in t else None
        row["seconds_per_batch"] = {str(b): s for b, s in t.items()}


def _apply_steps(steps: list[Step], state: CompressState, ctx, out: Path, data_meta, log, key):
    """Run, save, measure and reload-check every step; rows and the models to time. ``key``
    identifies the run and the fine-tuning recipe (for resuming interrupted trainings)."""
    history: list[dict[str, Any]] = []
    original = state.finalized()
    path = _save(out, 0, "original", state, original, data_meta, history)
    rows = [{"step": "original", **_measure(path, state, original, ctx, None)}]
    models = {"00-original": original}
    for i, step in enumerate(steps, start=1):
        log(f"step {i}/{len(steps)}: {step.label}")
        # A training interrupted in this step continues only under the same steps so far.
        ctx.begin_step(i, {**key, "steps": [{"name": s.name, **s.options} for s in steps[:i]]})
        state = state.clone()
        details = step.run(state, ctx)
        history.append({"name": step.name, "options": step.options})
        final = state.finalized()
        path = _save(out, i, step.name, state, final, data_meta, history)
        measured = _measure(path, state, final, ctx, rows[0]["test_acc"])
        row = {"step": step.label, **measured, "details": details}
        log(
            f"  test acc {row['test_acc']:.4f} ({100 * row['delta_acc']:+.2f} points), "
            f"{row['bytes']:,} bytes, {row['nonzero']:,}/{row['params']:,} non-zero"
        )
        rows.append(row)
        models[f"{i:02d}-{step.name}"] = final
    return rows, models


def run_compression(
    run_dir: str | Path, config: str | Path | Mapping[str, Any], *, out: str | Path | None = None,
    data_dir: str | None = None, log: Log = print, timing: bool | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Run the config's steps on ``run_dir``'s model; write models and reports to ``out``."""
    conf = read_config(config)
    measure = {**conf["measure"], **({} if timing is None else {"timing": timing})}
    out = Path(out) if out is not None else Path(run_dir) / "compressed"
    if (out / "report.json").exists():
        raise CompressionError(f"{out} already holds a compression report; choose another --out")
    cfg, model, meta = load_run(run_dir, data_dir)
    ctx = CompressContext.from_config(cfg, conf["finetune"], log)
    ctx.resume_dir = out / RESUME_DIR
    data_meta = {k: v for k, v in meta["data"].items() if k != "data_dir"}
    state = CompressState(model=model, spec=meta["model"])
    key = {"run_sha256": meta.get("sha256"), "finetune": conf["finetune"]}
    rows, models = _apply_steps(conf["steps"], state, ctx, out, data_meta, log, key)
    if measure["timing"]:
        _time_rows(rows, models, ctx.input_size, measure, log)
    add_ratios(rows)
    config = {"steps": conf["raw_steps"], "finetune": conf["finetune"], "measure": measure}
    report = {"run": str(run_dir), "model": meta["model"], "data": data_meta, "rows": rows,
              "config": config, "env": _env(measure), "notes": _notes(rows)}  # fmt: skip
    write_reports(out, report)
    shutil.rmtree(ctx.resume_dir, ignore_errors=True)  # the report is out: nothing to resume
    return report


def retime_compression(out: str | Path, *, log: Log = print) -> dict[str, Any]:
    """Time the saved models of a finished compression run again and rewrite its reports.

    Latency and throughput are the only figures that depend on what else the machine is
    doing: a study run beside other jobs can be re-timed later on a quiet machine. The models
    are read back from their saved files (the reports already show that they reproduce the
    in-memory models exactly) and timed side by side with the run's own ``measure`` settings;
    sizes, parameters and accuracies stay as measured.
    """
    out = Path(out)
    path = out / "report.json"
    if not path.is_file():
        raise CompressionError(f"{out}: no report.json, so no finished compression to re-time")
    report = json.loads(path.read_text(encoding="utf-8"))
    measure, spec = report["config"]["measure"], report["model"]
    files = [row["file"] for row in report["rows"]]
    models = {Path(f).stem: load_compressed(out / f)[0] for f in files}
    input_size = (spec["in_chans"], spec["input_size"], spec["input_size"])
    _time_rows(report["rows"], models, input_size, measure, log)
    add_ratios(report["rows"])
    report["env"] = _env(measure)
    report["retimed"] = time.strftime("%Y-%m-%d %H:%M:%S")
    write_reports(out, report)
    return report


def _env(measure: dict[str, Any]) -> dict[str, Any]:
    return {
        "torch": torch.__version__,
        "threads": measure["threads"] or torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "quantized_engine": torch.backends.quantized.engine,
    }


def _notes(rows: list[dict[str, Any]]) -> list[str]:
    notes = []
    for row in rows:
        if row["reload_acc"] != row["test_acc"]:
            notes.append(f"{row['file']}: reloaded accuracy differs by "
                         f"{100 * (row['reload_acc'] - row['test_acc']):+.3f} points")  # fmt: skip
    return notes
