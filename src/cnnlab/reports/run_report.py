"""The HTML report of one training run (``run_dir/report.html``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from cnnlab.engine.checkpoint import atomic_write_text
from cnnlab.reports.artifacts import RunData, load_run
from cnnlab.reports.environment import environment_line
from cnnlab.reports.fmt import fmt_float, fmt_int, fmt_pct, fmt_seconds, fmt_si, fmt_value
from cnnlab.reports.html_page import esc, note, page, section, table, toc
from cnnlab.reports.sections import (
    confusion_part,
    curves_part,
    examples_part,
    headline_rows,
    inside_part,
    per_class_part,
    weights_part,
)

Log = Callable[[str], None]


def build_run_report(
    run_dir: str | Path, *, out: str | Path | None = None, log: Log | None = None
) -> Path:
    """Write the report of the run in ``run_dir`` to ``out`` (default ``run_dir/report.html``).

    Only ``metrics.json`` is required; missing optional parts get a note on the page, and
    unreadable ones are also passed to ``log`` as warnings.
    """
    run = load_run(run_dir)
    target = Path(out) if out is not None else run.path / "report.html"
    atomic_write_text(target, render_run_page(run))
    for warning in run.warnings():
        if log is not None:
            log(f"warning: {warning}")
    return target


def env_line(env: dict[str, Any] | None) -> str:
    """The one-line hardware/software summary, tolerant of older or partial env.json files."""
    if not env:
        return "hardware and software not recorded"
    try:
        return environment_line(env)
    except (KeyError, TypeError):
        keys = ("cpu", "gpu", "device", "python", "torch", "cnnlab")
        return ", ".join(f"{k} {env[k]}" for k in keys if env.get(k)) or "not recorded"


def env_table(env: dict[str, Any] | None) -> str:
    if not env:
        return note("No environment information (env.json) was recorded.")
    return table(["item", "value"], [[k, fmt_value(v)] for k, v in env.items()])


def run_summary(run: RunData) -> str:
    """One paragraph saying what was trained on what, how well, how big and how fast."""
    m = run.metrics
    test = m.get("test") or {}
    epochs = m.get("epochs")
    return (
        f"{m.get('model', run.model)} was trained for {fmt_int(epochs)} "
        f"epoch{'' if epochs == 1 else 's'} on {m.get('dataset', '?')} "
        f"(data: {m.get('data_source', '?')}) and reaches {fmt_pct(m.get('test_acc'))} accuracy "
        f"on {fmt_int(test.get('num_samples'))} test images (test loss "
        f"{fmt_float(m.get('test_loss'))}). The model has {fmt_si(m.get('params'))} parameters "
        f"and needs {fmt_si(m.get('macs'))} multiply-adds per image. Training took "
        f"{fmt_seconds(m.get('train_seconds'))} ({fmt_seconds(m.get('seconds_per_epoch'))} per "
        f"epoch) on {m.get('device', '?')} in {m.get('precision', '?')} precision."
    )


def weights_title(run: RunData) -> str:
    if run.weights is not None and run.weights.kind == "templates":
        return "Learned weights: one template per class"
    return "Learned weights: first-layer filters"


def render_run_page(run: RunData) -> str:
    """The full HTML page of one run."""
    m = run.metrics
    title = f"{run.model} on {m.get('dataset', '?')}"
    parts = [
        ("results", "Results", table(["metric", "value"], headline_rows(run))),
        ("curves", "Training curves", curves_part(run)),
        ("confusion", "Confusion matrix", confusion_part(run)),
        ("per-class", "Per-class precision, recall and F1", per_class_part(run)),
        ("examples", "Example test images", examples_part(run)),
        ("weights", weights_title(run), weights_part(run)),
        *([("inside", "Inside the network", inside)] if (inside := inside_part(run)) else []),
        ("config", "Configuration", _config_part(run)),
        ("environment", "Environment", env_table(run.env)),
    ]
    head = (
        f"<header><h1>cnnlab run: {esc(title)}</h1>"
        f'<p class="lead">{esc(run_summary(run))}</p>'
        f'<p class="env">Run directory {esc(run.path)}. Hardware and software: '
        f"{esc(env_line(run.env))}.</p></header>"
    )
    body = head + toc([(a, t) for a, t, _ in parts]) + "".join(section(*p) for p in parts)
    return page(f"cnnlab run: {title}", body)


def _config_part(run: RunData) -> str:
    if run.config_text is None:
        n = run.notes.get("config")
        return note(n.text if n else "No config.yaml recorded.", warn=bool(n and n.warn))
    return (
        "<p>The resolved recipe of this run (defaults, recipe file and overrides merged). "
        f"Train it again with <code>cnnlab train --config {esc(run.path / 'config.yaml')} "
        "--out NEW_DIR</code>; regenerate this page with "
        f"<code>cnnlab report {esc(run.path)}</code>.</p><pre>{esc(run.config_text)}</pre>"
    )
