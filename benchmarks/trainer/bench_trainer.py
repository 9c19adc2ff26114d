"""cnnlab's trainer against a plain PyTorch loop, side by side on one machine.

For each model, every variant trains for the same number of epochs on the full Fashion-MNIST
(batch 100, Adam 1e-3), each in a fresh process, in ABBA order over rounds (round 2 runs the
variants in reverse) so slow drifts in the machine's background load hit every variant alike.
Reported: median training images/s over all epochs and rounds, the ratio to the plain loop, and
test accuracy after the last epoch (each round uses another seed).

    python benchmarks/trainer/bench_trainer.py --data-dir ../shared/data --epochs 4 \
        --models cnn2,resnet20 --rounds 2
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# resnet20 with projection shortcuts (option B) is exactly the plain loop's ResNet-20.
MODEL_SETS = {"resnet20": ["--set", "model.params.shortcut=B"]}


def run_plain(model: str, epochs: int, data_dir: str, seed: int) -> dict:
    cmd = [sys.executable, str(HERE / "plain_loop.py"), "--model", model, "--epochs",
           str(epochs), "--data-dir", data_dir, "--seed", str(seed)]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def run_cnnlab(model: str, epochs: int, data_dir: str, seed: int, procs: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable, "-m", "cnnlab", "train", "--model", model, "--epochs", str(epochs),
            "--data-dir", data_dir, "--seed", str(seed), "--no-progress", "--out", f"{tmp}/run",
            "--procs", str(procs), *MODEL_SETS.get(model, []),
        ]  # fmt: skip
        subprocess.run(cmd, capture_output=True, text=True, check=True)
        with open(f"{tmp}/run/history.csv") as f:
            rows = list(csv.DictReader(f))
        params = json.loads(Path(f"{tmp}/run/metrics.json").read_text())["params"]
    epochs_out = [{"seconds": float(r["epoch_seconds"]),
                   "images_per_s": float(r["train_images_per_s"]),
                   "test_acc": float(r["test_acc"])} for r in rows]  # fmt: skip
    return {"variant": f"cnnlab-{procs}p", "model": model, "params": params, "epochs": epochs_out}


def machine() -> dict:
    import torch

    from cnnlab.reports.environment import environment_info

    info = environment_info()
    info["date"] = time.strftime("%Y-%m-%d %H:%M")
    info["torch_config_capability"] = torch.backends.cpu.get_cpu_capability()
    info["machine"] = platform.machine()
    return info


def summarise(runs: list[dict]) -> dict:
    by_variant: dict[str, list[dict]] = {}
    for r in runs:
        by_variant.setdefault(r["variant"], []).append(r)
    out = {}
    for variant, rs in by_variant.items():
        speeds = [e["images_per_s"] for r in rs for e in r["epochs"]]
        out[variant] = {
            "median_images_per_s": statistics.median(speeds),
            "min_images_per_s": min(speeds),
            "max_images_per_s": max(speeds),
            "final_test_acc": [r["epochs"][-1]["test_acc"] for r in rs],
            "test_acc_per_epoch": [[e["test_acc"] for e in r["epochs"]] for r in rs],
            "params": rs[0]["params"],
        }
    base = out["plain"]["median_images_per_s"]
    for v in out.values():
        v["speedup_vs_plain"] = v["median_images_per_s"] / base
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--models", default="cnn2,resnet20")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--procs", default="1,2", help="cnnlab process counts to include")
    ap.add_argument("--out", default=str(HERE / "results.json"))
    args = ap.parse_args()
    variants = ["plain"] + [f"cnnlab-{p}p" for p in args.procs.split(",")]
    report = {"command": " ".join(sys.argv), "machine": machine(), "epochs": args.epochs,
              "models": {}}  # fmt: skip
    for model in args.models.split(","):
        runs = []
        for rnd in range(args.rounds):
            order = variants if rnd % 2 == 0 else variants[::-1]
            for v in order:
                print(f"{model} round {rnd + 1}: {v}", file=sys.stderr, flush=True)
                if v == "plain":
                    runs.append(run_plain(model, args.epochs, args.data_dir, rnd))
                else:
                    procs = int(v.split("-")[1][:-1])
                    runs.append(run_cnnlab(model, args.epochs, args.data_dir, rnd, procs))
                print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
        report["models"][model] = {"summary": summarise(runs), "runs": runs}
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({m: v["summary"] for m, v in report["models"].items()}, indent=2))


if __name__ == "__main__":
    main()
