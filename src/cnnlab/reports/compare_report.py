"""The HTML report of a model comparison (``compare_dir/report.html``, from ``results.json``)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cnnlab.engine.checkpoint import atomic_write_text
from cnnlab.reports.artifacts import ReportError, RunData, load_run, read_json_object
from cnnlab.reports.fmt import fmt_float, fmt_int, fmt_pct, fmt_seconds, fmt_si, number
from cnnlab.reports.html_page import (
    esc,
    figure,
    img_png,
    note,
    num,
    page,
    section,
    slug,
    table,
    toc,
)
from cnnlab.reports.results import wall_time
from cnnlab.reports.run_report import env_line, env_table, weights_title
from cnnlab.reports.sections import (
    confusion_part,
    curves_part,
    examples_part,
    inside_part,
    weights_part,
)
from cnnlab.viz.png import figure_to_png
from cnnlab.viz.tradeoff import plot_tradeoff

Log = Callable[[str], None]
RESULTS = "results.json"


def load_results(compare_dir: str | Path) -> dict[str, Any]:
    """``results.json`` of a compare directory, checked for the fields the report relies on."""
    path = Path(compare_dir) / RESULTS
    data = read_json_object(path, "not a comparison: `cnnlab compare` writes results.json")
    rows = data.get("rows")
    if not isinstance(rows, list) or not rows:
        raise ReportError(f"{path}: 'rows' must be a non-empty list of models")
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not isinstance(row.get("model"), str):
            raise ReportError(f"{path}: rows[{i}] must be an object with a 'model' name")
        runs = row.get("runs", [])
        if not isinstance(runs, list) or not all(isinstance(r, str) for r in runs):
            raise ReportError(f"{path}: rows[{i}].runs must be a list of run directory paths")
    notes = data.get("notes", [])
    if not isinstance(notes, list):
        raise ReportError(f"{path}: 'notes' must be a list of strings")
    return data


def build_compare_report(
    compare_dir: str | Path, *, out: str | Path | None = None, log: Log | None = None
) -> Path:
    """Write the comparison report of ``compare_dir`` (default ``compare_dir/report.html``)."""
    root = Path(compare_dir)
    if not root.is_dir():
        raise ReportError(f"{root}: not a directory")
    results = load_results(root)
    runs = [_first_run(root, row) for row in results["rows"]]
    target = Path(out) if out is not None else root / "report.html"
    atomic_write_text(target, render_compare_page(results, runs, root))
    for run in runs:
        for warning in run.warnings() if isinstance(run, RunData) else []:
            if log is not None:
                log(f"warning: {warning}")
    return target


def _first_run(root: Path, row: dict[str, Any]) -> RunData | str:
    """The first run directory of a row that holds a finished run, or a note why none does."""
    paths = row.get("runs") or []
    for rel in paths:
        if (root / rel / "metrics.json").is_file():
            try:
                return load_run(root / rel)
            except ReportError as err:  # one damaged run should not hide the whole study
                return f"Cannot show this model's run: {err}"
    if not paths:
        return "results.json lists no run directories for this model."
    return f"Run directory {paths[0]} not found (or holds no metrics.json) under {root}."


def _seeds_text(rows: list[dict[str, Any]]) -> str:
    seeds = [tuple(r.get("seeds") or ()) for r in rows]
    if seeds and all(s == seeds[0] for s in seeds) and seeds[0]:
        if len(seeds[0]) == 1:
            return f"Each model was trained once (seed {seeds[0][0]}). "
        return (
            f"Each model was trained {len(seeds[0])} times (seeds "
            f"{', '.join(map(str, seeds[0]))}); accuracies are mean ± standard deviation. "
        )
    counts = sorted({len(s) for s in seeds if s})
    if not counts:
        return ""
    return f"Models were trained with {counts[0]} to {counts[-1]} seeds each. "


def best_index(rows: list[dict[str, Any]]) -> int | None:
    accs = [number(r.get("test_acc")) for r in rows]
    finite = [(a, i) for i, a in enumerate(accs) if a is not None]
    return max(finite)[1] if finite else None


def compare_summary(results: dict[str, Any]) -> str:
    rows = results["rows"]
    best = best_index(rows)
    names = ", ".join(dict.fromkeys(r["model"] for r in rows))
    total = sum(number(r.get("train_seconds")) or 0.0 for r in rows)
    winner = (
        f"The most accurate is {rows[best]['model']} with "
        f"{fmt_pct(rows[best].get('test_acc'), rows[best].get('test_acc_std'))} test accuracy. "
        if best is not None
        else ""
    )
    return (
        f"This page compares {len(rows)} model{'s' if len(rows) != 1 else ''} ({names}) on "
        f"the {results.get('dataset', '?')} image-classification data (source: "
        f"{results.get('data_source', '?')}), using the preset “{results.get('preset', '?')}”. "
        f"{_seeds_text(rows)}{winner}Training took {fmt_seconds(total)} summed over the "
        f"models; {wall_time(results)}"
        f"{', started ' + str(results['started']) if results.get('started') else ''}."
    )


def results_table(rows: list[dict[str, Any]]) -> str:
    best = best_index(rows)
    head = ["model", num("test acc"), num("test loss"), num("train-set acc"),
            num("params"), num("mult-adds"), num("training time"), num("s / epoch"),
            num("infer img/s"), num("epochs"), num("threads")]  # fmt: skip
    body = []
    for r in rows:
        std = r.get("test_acc_std") if len(r.get("seeds") or []) > 1 else None
        body.append([
            r["model"],
            num(fmt_pct(r.get("test_acc"), std), r.get("test_acc")),
            num(fmt_float(r.get("test_loss")), r.get("test_loss")),
            num(fmt_pct(r.get("train_set_acc")), r.get("train_set_acc")),
            num(fmt_si(r.get("params")), fmt_int(r.get("params"))),
            num(fmt_si(r.get("macs")), fmt_int(r.get("macs"))),
            num(fmt_seconds(r.get("train_seconds")), r.get("train_seconds")),
            num(fmt_seconds(r.get("seconds_per_epoch")), r.get("seconds_per_epoch")),
            num(fmt_si(r.get("infer_images_per_s")), r.get("infer_images_per_s")),
            num(fmt_int(r.get("epochs"))),
            num(fmt_int(r.get("threads"))),
        ])  # fmt: skip
    marks = ["best" if i == best else "" for i in range(len(rows))]
    legend = (
        "Test accuracy and loss on the held-out test set (highlighted: best accuracy). "
        "Train-set accuracy: the final model on all training images (no dropout, no "
        "augmentation); far above the test accuracy means overfitting. Threads: the torch "
        "threads that trained the model. "
        "Multiply-adds: per image in one forward pass. Training time: wall clock for all epochs "
        "on this machine (mean over seeds); inference: test images classified per second."
    )
    return table(head, body, row_classes=marks) + f'<p class="muted">{esc(legend)}</p>'


def model_part(row: dict[str, Any], run: RunData | str, root: Path) -> str:
    """Curves, confusion matrix, examples and weights of one model (its first run)."""
    if isinstance(run, str):
        return note(run, warn=True)
    runs = row.get("runs") or []
    origin = (
        f"Figures from the run in {os.path.relpath(run.path, root)}"
        f"{f' (1 of {len(runs)} seeds)' if len(runs) > 1 else ''}: test accuracy "
        f"{fmt_pct(run.metrics.get('test_acc'))}, {fmt_si(run.metrics.get('params'))} parameters."
    )
    return (
        f'<p class="muted">{esc(origin)}</p>'
        f'<div class="pair"><div><h3>Training curves</h3>{curves_part(run)}</div>'
        f"<div><h3>Confusion matrix</h3>{confusion_part(run)}</div></div>"
        f"<h3>Example test images</h3>{examples_part(run)}"
        f"<h3>{esc(weights_title(run))}</h3>{weights_part(run)}" + _inside(run)
    )


def _inside(run: RunData) -> str:
    inside = inside_part(run)
    return "" if inside is None else f"<h3>Inside the network</h3>{inside}"


def render_compare_page(results: dict[str, Any], runs: list[RunData | str], root: Path) -> str:
    """The full HTML page of a comparison."""
    rows = results["rows"]
    taken = {"results", "tradeoff", "notes", "command", "environment"}
    models = []
    for row, run in zip(rows, runs, strict=True):
        label = f"{row['model']} ({row['recipe']})" if row.get("recipe") else row["model"]
        models.append((slug(label, taken), label, model_part(row, run, root), "model"))
    parts = [
        ("results", "Results", results_table(rows), ""),
        ("tradeoff", "Accuracy against cost", _tradeoff_part(rows), ""),
        ("notes", "Notes", _notes_part(results.get("notes") or []), ""),
        *models,
        ("command", "Command", _command_part(results), ""),
        ("environment", "Environment", env_table(results.get("env")), ""),
    ]
    title = f"{results.get('preset', 'comparison')} on {results.get('dataset', '?')}"
    described = results.get("description")
    head = (
        f"<header><h1>cnnlab comparison: {esc(title)}</h1>"
        f'<p class="lead">{esc(compare_summary(results))}</p>'
        + (f"<p>About the preset: {esc(described)}</p>" if described else "")
        + f'<p class="env">Hardware and software: {esc(env_line(results.get("env")))}.</p>'
        "</header>"
    )
    body = head + toc([(a, t) for a, t, _, _ in parts])
    body += "".join(section(a, t, h, cls=c) for a, t, h, c in parts)
    return page(f"cnnlab comparison: {title}", body)


def _tradeoff_part(rows: list[dict[str, Any]]) -> str:
    png = figure_to_png(plot_tradeoff(rows), dpi=90)
    return figure(
        img_png(png, "test accuracy against parameters and training time"),
        "Test accuracy against parameter count and against training time (log scales; bars: "
        "± one standard deviation over seeds; star: most accurate).",
    )


def _notes_part(notes: list[Any]) -> str:
    if not notes:
        return note("No notes were recorded with this comparison.")
    return "<ul class='notes'>" + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>"


def _command_part(results: dict[str, Any]) -> str:
    command = results.get("command") or "(not recorded)"
    return (
        f"<p>This comparison was produced by:</p><pre>{esc(command)}</pre>"
        "<p class='muted'>Regenerate this page from the saved results, without training, with "
        "<code>cnnlab report DIR</code>.</p>"
    )
