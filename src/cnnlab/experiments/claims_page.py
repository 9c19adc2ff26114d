"""The self-contained HTML page of one experiment (and the sections the book reuses)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from cnnlab.engine.checkpoint import atomic_write_text
from cnnlab.experiments.figures import result_figures
from cnnlab.reports.html_page import Cell, esc, figure, img_png, note, num, page, section, table

BADGE = {"reproduced": "#1a7f37", "not reproduced": "#c62828", "inconclusive": "#b26a00"}


def fmt(v: Any) -> str:
    """Numbers with 4 significant digits; lists shortened; everything else as text."""
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        shown = ", ".join(fmt(x) for x in v[:8])
        return f"[{shown}{', ...' if len(v) > 8 else ''}]"
    return str(v)


def verdict_html(result: dict[str, Any]) -> str:
    """The verdict badge; the reason itself when there is one part, else a count of parts."""
    colour = BADGE.get(result["verdict"], "#5b6573")
    parts = result.get("parts", [])
    if len(parts) > 1:
        counts = Counter(p["status"] for p in parts)
        text = f"{len(parts)} parts: " + ", ".join(f"{n} {s}" for s, n in counts.items())
    else:
        text = result["reason"]
    return (
        f'<p><span style="background:{colour};color:#fff;padding:2px 8px;border-radius:4px;'
        f'font-weight:600">{esc(result["verdict"])}</span> {esc(text)}</p>'
    )


def summary_rows(result: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """Table of a trend result: one row per arm, mean ± std of each metric, per-seed values."""
    m = result["measured"]
    keys: list[str] = []
    for arm in m["arms"]:
        keys += [k for k in m["summary"].get(arm, {}) if k not in keys]
    head = ["arm", *[m["metrics"].get(k, {}).get("label", k) for k in keys]]
    rows = []
    for arm in m["arms"]:
        row: list[Any] = [arm]
        for k in keys:
            s = m["summary"].get(arm, {}).get(k)
            if s is None:
                row.append("")
                continue
            text = fmt(s["mean"]) + (f" ± {s['std']:.2g}" if len(s["values"]) > 1 else "")
            row.append(num(text, "per seed: " + fmt(s["values"])))
        rows.append(row)
    return head, rows


def checks_table(result: dict[str, Any]) -> str:
    rows = [
        [
            c["name"],
            fmt(c["measured"]),
            fmt(c["expected"]),
            fmt(c["tol"]),
            Cell("ok" if c["ok"] else "FAIL", "" if c["ok"] else "bad"),
        ]
        for c in result["measured"]["checks"]
    ]
    return table(["check", "computed", "expected", "tolerance", ""], rows)


def parts_table(result: dict[str, Any]) -> str:
    rows = [[p["claim"], p["status"], p["reason"]] for p in result.get("parts", [])]
    return table(["part of the claim", "status", "computed from"], rows)


def result_body(result: dict[str, Any], *, figures: bool = True, level: int = 2) -> str:
    """Claim, runs, measurement, numbers, verdict, figures and provenance of one result."""
    h = f"h{level + 1}"
    out = [
        f"<p><b>Claim (§{esc(result['section'])}).</b> {esc(result['claim'])}</p>",
        f"<p><b>Runs.</b> {esc(result['runs'])}</p>",
        f"<p><b>Measurement.</b> {esc(result['measurement'])}</p>",
        verdict_html(result),
    ]
    if result["kind"] == "exact":
        out.append(checks_table(result))
    else:
        out.append(parts_table(result))
        head, rows = summary_rows(result)
        out.append(f"<{h}>Measured (mean ± std over seeds {esc(result['seeds'])})</{h}>")
        out.append(table(head, rows))
        if figures:
            for caption, png in result_figures(result):
                out.append(figure(img_png(png, caption), caption))
    if result.get("scale") != "full":
        out.append(
            note(
                f"Scale: {result.get('scale')} (small settings; not the results-book run).",
                warn=True,
            )
        )
    out.append(
        f'<p class="muted">Settings: {esc(fmt_settings(result.get("settings", {})))}<br>'
        f"Command: <code>{esc(result.get('command') or '(API call)')}</code><br>"
        f"Hardware: {esc(result.get('hardware', ''))}<br>"
        f"Wall time: {result.get('wall_seconds', 0):.1f} s, "
        f"started {esc(result.get('started'))}</p>"
    )
    return "\n".join(out)


def fmt_settings(settings: dict[str, Any]) -> str:
    return ", ".join(f"{k}={fmt(v)}" for k, v in settings.items()) or "(none)"


def write_page(result: dict[str, Any], path: str | Path) -> Path:
    """``report.html`` of one experiment."""
    title = f"{result['name']} — §{result['section']} {result['title']}"
    body = f"<h1>{esc(title)}</h1>\n" + section("result", "Result", result_body(result))
    path = Path(path)
    atomic_write_text(path, page(title, body))
    return path
