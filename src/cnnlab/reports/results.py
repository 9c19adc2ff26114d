"""Results of a comparison as JSON, CSV and Markdown, and notes against published claims."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from cnnlab.engine.checkpoint import atomic_write_text
from cnnlab.engine.rundir import clean_json
from cnnlab.reports.environment import environment_line
from cnnlab.reports.fmt import fmt_seconds

COLUMNS = [
    ("model", "model"),
    ("recipe", "recipe"),
    ("test_acc", "test acc"),
    ("test_acc_std", "± std"),
    ("test_loss", "test loss"),
    ("train_set_acc", "train-set acc"),
    ("params", "params"),
    ("macs", "MACs"),
    ("train_seconds", "train s"),
    ("seconds_per_epoch", "s/epoch"),
    ("infer_images_per_s", "infer img/s"),
    ("epochs", "epochs"),
    ("threads", "threads"),
]


def write_results(out: Path, results: dict[str, Any]) -> None:
    """``results.json`` (everything), ``results.csv`` and ``results.md`` (the table)."""
    atomic_write_text(out / "results.json", json.dumps(clean_json(results), indent=2) + "\n")
    atomic_write_text(out / "results.csv", results_csv(results["rows"]))
    atomic_write_text(out / "results.md", results_markdown(results))


def results_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([key for key, _ in COLUMNS] + ["seeds"])
    for row in rows:
        writer.writerow(
            [_plain(row.get(key)) for key, _ in COLUMNS] + [" ".join(str(s) for s in row["seeds"])]
        )
    return buf.getvalue()


def _plain(value: Any) -> Any:
    return "" if value is None else value


def format_acc(row: dict[str, Any]) -> str:
    text = f"{100 * row['test_acc']:.2f}%"
    if row.get("test_acc_std") is not None:
        text += f" ± {100 * row['test_acc_std']:.2f}"
    return text


def results_markdown(results: dict[str, Any]) -> str:
    lines = [
        f"# cnnlab compare: preset `{results['preset']}`",
        "",
        f"Data: {results['dataset']} ({results['data_source']}); seeds per model: "
        f"{results['seeds']}; {wall_time(results)}.",
        "",
        "| model | recipe | test acc | test loss | train-set acc | params | MACs | train s "
        "| s/epoch | infer img/s | epochs | threads |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["rows"]:
        train_set = "" if r.get("train_set_acc") is None else f"{100 * r['train_set_acc']:.2f}%"
        lines.append(
            f"| {r['model']} | {r['recipe']} | {format_acc(r)} | {r['test_loss']:.4f} "
            f"| {train_set} | {r['params']:,} | {r['macs']:,} | {r['train_seconds']:.0f} "
            f"| {r['seconds_per_epoch']:.1f} | {r['infer_images_per_s']:,.0f} | {r['epochs']} "
            f"| {_plain(r.get('threads'))} |"
        )
    if results.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {n}" for n in results["notes"]]
    if results.get("command"):
        lines += ["", f"Command: `{results['command']}`"]
    env = results.get("env") or {}
    if env:
        lines += [
            "",
            f"Hardware/software: {environment_line(env)} (the process that ran this command; "
            "the threads column gives each model's training threads)",
        ]
    return "\n".join(lines) + "\n"


def wall_time(results: dict[str, Any]) -> str:
    """The study's wall time, saying so when earlier invocations did part of the work."""
    text = f"wall time {fmt_seconds(results.get('wall_seconds'))}"
    reused, resumed = results.get("reused_runs", 0), results.get("resumed_runs", 0)
    if reused or resumed:
        text += (
            f" for this invocation, which reused {reused} finished and resumed {resumed} "
            "interrupted run(s) of earlier ones (each model's training time is its total)"
        )
    return text


def notes_against_claims(
    claims: dict[str, Any], rows: list[dict[str, Any]], out: Path | None = None
) -> list[str]:
    """Compare measured accuracy with a study's claims; explain gaps from the numbers."""
    notes = []
    for row in rows:
        claim = claims.get(row["model"])
        if not claim:
            continue
        c, test, running = claim["test_acc"], row["test_acc"], row["train_acc"]
        train_set = row.get("train_set_acc")
        train = max(running, train_set or 0.0)
        on_train = (
            f"; the final model on the training set: {100 * train_set:.2f}%"
            if train_set is not None
            else ""
        )
        text = (
            f"{row['model']}: the case study reports about {100 * c:.0f}%"
            f"{' after ' + str(claim['epochs']) + ' epochs' if claim.get('epochs') else ''}; "
            f"cnnlab measured {100 * test:.2f}% test accuracy after {row['epochs']} epochs "
            f"(training accuracy: {100 * running:.2f}% running in the last epoch{on_train}). "
        )
        if abs(test - c) <= 0.01:
            text += "Consistent with the claim."
        elif test > c:
            text += "cnnlab's test accuracy is higher than the claim."
        elif train >= c - 0.01:
            text += (
                "The claim is reached only by the training accuracy, so the case study most "
                "likely reported accuracy on the training data, not on the 10,000 test images."
            )
        else:
            text += (
                "Neither test nor training accuracy reaches the claim under this recipe; "
                "see the recipe and the training curves."
            )
        notes.append(text)
    return notes
