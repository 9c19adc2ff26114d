"""``cnnlab compress RUN_DIR --config FILE``: chain compression steps on a trained run (ch. 4)."""

from __future__ import annotations

from cnnlab.cli.common import log, print_json


def register(sub) -> None:
    p = sub.add_parser(
        "compress",
        help="compress a trained run (prune, quantise, binarise, distil, ...) and report",
        description="Apply the steps of a compression config to a run's model; save every "
        "step's model in its real storage format and write report.json / report.md "
        "(params, non-zeros, bytes on disk, MACs, latency, throughput, test accuracy). "
        "Trainings save OUT/resume/ after every epoch: an interrupted run continues from its "
        "last finished epoch when the same command is run again.",
    )
    p.add_argument("run_dir", help="training run directory (or its checkpoint.safetensors)")
    p.add_argument("--config", required=True, metavar="FILE", help="compression YAML (steps)")
    p.add_argument("--out", metavar="DIR", help="output directory (default RUN_DIR/compressed)")
    p.add_argument("--data-dir", metavar="DIR", help="directory holding the data set files")
    p.add_argument("--no-timing", action="store_true", help="skip latency/throughput timing")
    p.add_argument("--json", action="store_true", help="print the report rows as JSON (last line)")
    p.set_defaults(func=cmd_compress)


def cmd_compress(args) -> int:
    from pathlib import Path

    from cnnlab.cli.errors import UsageError
    from cnnlab.compression.arch import ArchitectureError
    from cnnlab.compression.compress_run import run_compression
    from cnnlab.compression.encoding import StorageError
    from cnnlab.compression.state import CompressionError

    out = Path(args.out) if args.out else Path(args.run_dir) / "compressed"
    try:
        report = run_compression(
            args.run_dir, args.config, out=out, data_dir=args.data_dir, log=log,
            timing=False if args.no_timing else None,
        )  # fmt: skip
    except (CompressionError, StorageError, ArchitectureError) as err:
        raise UsageError(str(err)) from None  # one clear line, exit code 2
    for row in report["rows"]:
        log(f"{row['step']:<40} {row['bytes']:>12,} bytes  acc {row['test_acc']:.4f}")
    log(f"report: {out / 'report.md'}")
    if args.json:
        print_json({"out": str(out), "rows": [
            {k: v for k, v in r.items() if k != "details"} for r in report["rows"]
        ]})  # fmt: skip
    return 0
