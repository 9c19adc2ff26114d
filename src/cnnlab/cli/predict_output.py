"""``cnnlab predict``'s rows as CSV, JSON, JSON Lines or a Markdown table.

A row is ``{"input": ..., "top_k": [{"label", "prob"}, ...], "error": None}`` (best first), or
``{"input": ..., "top_k": [], "error": "why"}`` for an input that could not be read. The text
is built whole and written in one atomic rename (``--out``), so an interrupted or failed run
never leaves a half-written results file.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

FORMATS = ("csv", "json", "jsonl", "md")
_SUFFIXES = {".csv": "csv", ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".md": "md"}
_DIGITS = 6  # probabilities: enough to tell near-ties apart, short enough to read


def format_for(out: str | None, given: str | None) -> str:
    """``--format`` if given, else from the ``--out`` suffix, else csv."""
    if given:
        return given
    return _SUFFIXES.get(Path(out).suffix.lower(), "csv") if out else "csv"


def _flat(row: dict[str, Any]) -> dict[str, Any]:
    top = row["top_k"]
    return {
        "input": row["input"],
        "label": top[0]["label"] if top else None,
        "prob": round(top[0]["prob"], _DIGITS) if top else None,
        "top_k": [{"label": t["label"], "prob": round(t["prob"], _DIGITS)} for t in top],
        "error": row["error"],
    }


def _csv(rows: list[dict[str, Any]], k: int) -> str:
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    head = ["input"]
    for i in range(1, k + 1):
        head += [f"label_{i}", f"prob_{i}"]
    out.writerow([*head, "error"])
    for row in rows:
        cells = [row["input"]]
        for i in range(k):
            t = row["top_k"][i] if i < len(row["top_k"]) else None
            cells += [t["label"], f"{t['prob']:.{_DIGITS}f}"] if t else ["", ""]
        out.writerow([*cells, row["error"] or ""])
    return buf.getvalue()


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md(rows: list[dict[str, Any]]) -> str:
    lines = ["| input | label | prob | top-k | error |", "|---|---|---:|---|---|"]
    for row in rows:
        top = row["top_k"]
        rest = ", ".join(f"{t['label']} {t['prob']:.1%}" for t in top)
        first = (top[0]["label"], f"{top[0]['prob']:.1%}") if top else ("", "")
        cells = [row["input"], *first, rest, row["error"] or ""]
        lines.append("| " + " | ".join(_md_cell(str(c)) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def render(rows: list[dict[str, Any]], fmt: str, *, k: int, header: dict[str, Any]) -> str:
    """The whole output text; ``header`` (run, model, classes, ...) heads the JSON object."""
    if fmt == "csv":
        return _csv(rows, k)
    if fmt == "md":
        return _md(rows)
    flat = [_flat(r) for r in rows]
    if fmt == "jsonl":
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in flat)
    if fmt == "json":
        return json.dumps({**header, "predictions": flat}, ensure_ascii=False, indent=1) + "\n"
    raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
