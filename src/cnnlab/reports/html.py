"""Self-contained HTML reports: ``build_report`` picks the run or the comparison page.

A comparison directory holds ``results.json`` (written by ``cnnlab compare``); a run
directory holds ``metrics.json`` (written by ``cnnlab train``). The page embeds every figure
as a data URI, so it can be mailed, archived or opened offline as one file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cnnlab.reports.artifacts import ReportError
from cnnlab.reports.compare_report import build_compare_report
from cnnlab.reports.run_report import build_run_report

__all__ = ["ReportError", "build_compare_report", "build_report", "build_run_report"]


def build_report(
    path: str | Path, *, out: str | Path | None = None, log: Callable[[str], None] | None = None
) -> Path:
    """Write ``report.html`` for the run or comparison in ``path``; return where it went."""
    root = Path(path)
    if not root.exists():
        raise ReportError(f"{root}: no such directory")
    if not root.is_dir():
        raise ReportError(f"{root}: not a directory (give a run or comparison directory)")
    if (root / "results.json").is_file():
        return build_compare_report(root, out=out, log=log)
    if (root / "metrics.json").is_file():
        return build_run_report(root, out=out, log=log)
    raise ReportError(
        f"{root}: neither a comparison (no results.json, written by `cnnlab compare`) nor a "
        "finished run (no metrics.json, written by `cnnlab train`)"
    )
