"""``results.json`` and ``results.md`` of ``cnnlab ensemble``: members, then every group x rule."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cnnlab.engine.checkpoint import atomic_write_text
from cnnlab.engine.rundir import clean_json


def write_ensemble_results(out: Path, results: dict[str, Any]) -> None:
    atomic_write_text(out / "results.json", json.dumps(clean_json(results), indent=2) + "\n")
    atomic_write_text(out / "results.md", results_markdown(results))


def _pct(v: float | None) -> str:
    return "" if v is None else f"{100 * v:.2f}%"


def _num(v: float | None, fmt: str = ".4f") -> str:
    return "" if v is None else format(v, fmt)


def _notes(row: dict[str, Any]) -> str:
    parts = []
    if "weights" in row:
        parts.append("weights " + ", ".join(f"{w:.3f}" for w in row["weights"]))
    if "oof_acc" in row:
        parts.append(f"out-of-fold val acc {_pct(row['oof_acc'])}, NLL {row['oof_nll']:.4f}")
    if row.get("test_abstentions"):
        parts.append(f"accuracy on answered {_pct(row['test_answered_acc'])}")
    return "; ".join(parts)


def results_markdown(results: dict[str, Any]) -> str:
    """The members table, then one row per (group, TTA, rule), with costs."""
    lines = [
        f"# cnnlab ensemble: `{results['name']}`",
        "",
        *([results["description"], ""] if results.get("description") else []),
        f"Data: {results['dataset']} ({results['data_source']}); {results['num_val']} validation "
        f"and {results['num_test']} test images. Total training time of all runs "
        f"{results['total_train_seconds']:.1f} s; wall time {results['wall_seconds']:.1f} s.",
        "",
        "## Members",
        "",
        "| member | test acc | test NLL | val acc | TTA test acc | train s | infer s | params |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in results["members"]:
        lines.append(
            f"| {m['name']} | {_pct(m['test_acc'])} | {_num(m['test_nll'])} "
            f"| {_pct(m['val_acc'])} | {_pct(m.get('tta_test_acc'))} "
            f"| {_num(m['train_seconds'], '.1f')} | {_num(m['infer_seconds'], '.2f')} "
            f"| {m['params']:,} |"
        )
    lines += [
        "",
        "## Ensembles",
        "",
        "Accuracy counts an abstention (majority voting without a majority) as an error.",
        "",
        "| group | rule | TTA | members | test acc | test NLL | abstentions | train s | infer s "
        "| notes |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results["rows"]:
        lines.append(
            f"| {r['group']} | {r['rule']} | {'yes' if r['tta'] else 'no'} | {len(r['members'])} "
            f"| {_pct(r['test_acc'])} | {_num(r['test_nll'])} | {r['test_abstentions']} "
            f"| {r['train_seconds']:.1f} | {r['infer_seconds']:.2f} | {_notes(r)} |"
        )
    if results.get("tta_views"):
        lines += ["", "TTA views: " + ", ".join(str(v) for v in results["tta_views"])]
    for warning in results.get("warnings", ()):
        lines += ["", f"Warning: {warning}."]
    if results.get("command"):
        lines += ["", f"Command: `{results['command']}`"]
    return "\n".join(lines) + "\n"
