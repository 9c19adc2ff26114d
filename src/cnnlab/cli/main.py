"""``cnnlab`` command line: a thin shell over the importable functions.

This module (and ``cnnlab.cli.*``) is the only place that reads ``sys.argv``; each sub-command
lives in its own module and registers its arguments here.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from cnnlab import __version__
from cnnlab.cli import commands
from cnnlab.cli.errors import run_guarded
from cnnlab.engine.allocator import tune_allocator


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cnnlab",
        description="Convolutional networks for image classification: build, train, inspect.",
    )
    parser.add_argument("--version", action="version", version=f"cnnlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in commands.REGISTRATIONS:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    tune_allocator()  # process-wide, so it belongs to the entry point
    return run_guarded(lambda: args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
