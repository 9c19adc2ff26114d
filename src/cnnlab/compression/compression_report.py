"""report.json and report.md of a compression run: one row per saved model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnnlab.engine.rundir import RunDir

COLUMNS = (
    ("step", "step"),
    ("params", "params"),
    ("nonzero", "non-zero"),
    ("bytes", "bytes on disk"),
    ("size_ratio", "x smaller"),
    ("macs", "MACs"),
    ("latency_b1_ms", "latency b1 (ms)"),
    ("throughput_b256", "throughput b256 (img/s)"),
    ("speedup_b256", "speed-up b256"),
    ("test_acc", "test acc"),
    ("delta_acc", "Δacc (points)"),
)


def _fmt(key: str, value: Any) -> str:
    if value is None:
        return "–"
    if key in ("params", "nonzero", "bytes", "macs"):
        return f"{int(value):,}"
    if key == "test_acc":
        return f"{100 * value:.2f}%"
    if key == "delta_acc":
        return f"{100 * value:+.2f}"
    if key in ("size_ratio", "speedup_b256"):
        return f"{value:.2f}x"
    if key == "latency_b1_ms":
        return f"{value:.3f}"
    if key == "throughput_b256":
        return f"{value:,.0f}"
    return str(value)


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """Size and speed ratios against the first row (the original model)."""
    base = rows[0]
    for row in rows:
        row["size_ratio"] = base["bytes"] / row["bytes"] if row.get("bytes") else None
        t0, t = base.get("throughput_b256"), row.get("throughput_b256")
        row["speedup_b256"] = t / t0 if t and t0 else None


def markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown page with the main table."""
    rows = report["rows"]
    retimed = f", re-timed {report['retimed']} from the saved models" if "retimed" in report else ""
    lines = [
        f"# Compression of {report['run']}",
        "",
        f"Model `{report['model']['name']}`, test set of {report['data'].get('dataset', '?')}. "
        "Bytes are the saved files; MACs per image; timing is the median of interleaved "
        f"repetitions on {report['env']['threads']} CPU thread(s) ({report['env']['cpu']})"
        f"{retimed}.",
        "",
        "| " + " | ".join(title for _, title in COLUMNS) + " |",
        "|" + "|".join("---" for _ in COLUMNS) + "|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(k, row.get(k)) for k, _ in COLUMNS) + " |")
    lines += ["", "Saved models reload and reproduce their accuracy:", ""]
    for row in rows:
        lines.append(
            f"- `{row['file']}`: reloaded acc {100 * row['reload_acc']:.2f}% "
            f"(max |Δlogit| on a test batch {row['reload_max_abs_diff']:.2e})"
        )
    if report.get("notes"):
        lines += ["", "Notes:", ""] + [f"- {n}" for n in report["notes"]]
    return "\n".join(lines) + "\n"


def write_reports(out: Path, report: dict[str, Any]) -> None:
    rd = RunDir(out)
    rd.write_json("report.json", report)
    rd.write_text("report.md", markdown(report))
