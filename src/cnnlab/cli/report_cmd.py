"""``cnnlab report DIR``: rebuild the HTML report of a run or a comparison from its files."""

from __future__ import annotations

from cnnlab.cli.common import log


def register(sub) -> None:
    p = sub.add_parser(
        "report",
        help="write the self-contained HTML report of a run or comparison directory",
        description="Regenerate report.html from the saved results (no training).",
    )
    p.add_argument("directory", metavar="DIR", help="run directory or comparison directory")
    p.add_argument(
        "--out", metavar="FILE", help="where to write the page (default DIR/report.html)"
    )
    p.set_defaults(func=cmd_report)


def cmd_report(args) -> int:
    from cnnlab.reports.html import build_report

    path = build_report(args.directory, out=args.out, log=log)
    print(path, flush=True)
    return 0
