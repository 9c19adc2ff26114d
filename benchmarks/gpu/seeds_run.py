"""The 94%-in-5-s attempt's seeds in one process (gpu_check.py's ``fast94`` step).

For each seed: ``cnnlab train --config RECIPE --seed S`` and, where the recipe is judged with
test-time augmentation, ``cnnlab eval RUN --tta PRESET``, both through the CLI in-process
(exactly what users run, without a process start and a CUDA start per seed). The training
time is the trainer's (metrics ``train_seconds``: the loop, evaluation excluded). Prints one
JSON line ``{"seeds": [...]}``.

    python benchmarks/gpu/seeds_run.py --config src/cnnlab/configs/fast/fast94.yaml \
        --seeds 0,1,2,3,4 --data-dir gpu_carry/data --out /tmp/fast94 --tta flip
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from pathlib import Path

from cnnlab.cli.main import main as cnnlab


def _cli(*argv: str) -> dict:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = cnnlab(list(argv))
    lines = [ln for ln in buf.getvalue().splitlines() if ln.startswith("{")]
    if rc != 0 or not lines:
        raise RuntimeError(f"cnnlab {' '.join(argv[:2])} exited {rc}")
    return json.loads(lines[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--tta", help="test-time augmentation preset to judge by (e.g. flip)")
    ap.add_argument("--device", help="train.device (default: the recipe's, auto)")
    ap.add_argument("--epochs", help="override the recipe's epochs (dry runs)")
    args = ap.parse_args()
    extra = [*(["--device", args.device] if args.device else []),
             *(["--epochs", args.epochs] if args.epochs else [])]  # fmt: skip
    seeds = []
    for seed in args.seeds.split(","):
        run = Path(args.out) / f"seed{seed}"
        entry: dict = {"seed": int(seed)}
        try:
            m = _cli(
                "train",
                "--config",
                args.config,
                "--seed",
                seed,
                "--data-dir",
                args.data_dir,
                "--out",
                str(run),
                "--no-progress",
                "--json",
                *extra,
            )
            entry.update(
                train_seconds=m["train_seconds"],
                test_acc=m["test_acc"],
                epochs=m["epochs"],
                precision=m["precision"],
                device=m["device"],
            )
            if args.tta:
                entry["tta_acc"] = _cli("eval", str(run), "--tta", args.tta, "--json")["test_acc"]
        except Exception as err:  # one seed's failure is reported, the others still run
            entry["error"] = f"{type(err).__name__}: {err}"
        seeds.append(entry)
        print(json.dumps(entry), file=sys.stderr, flush=True)
    print(json.dumps({"seeds": seeds}))


if __name__ == "__main__":
    main()
