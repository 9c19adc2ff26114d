"""Prediction speed: ``cnnlab predict`` on 10,000 PNG files and on the IDX test file, beside
``cnnlab eval``'s inference speed for the same model (issue 21).

    .venv/bin/python benchmarks/predict/run.py --data-dir ../shared/data

Trains cnn2 with the ``best`` recipe into runs/predict/cnn2 when it is missing, writes the 10,000
Fashion-MNIST test images as PNG files into runs/predict/png/, then runs every command
``--repeats`` times, each as its own process (as a user runs it), and records the median of:

- images/s as the command reports it: ``eval``'s is its inference loop over the in-memory test
  set; ``predict``'s runs from reading the first input to the results written (decoding,
  inference, the CSV), without starting Python and loading the run;
- the whole command's wall time, and its CPU time (user + system of the process and of its
  decoding workers) divided by that wall time: how many cores it kept busy.

A decoding probe compares one process, two threads and two processes on the same 10,000 files
(the choice ``cnnlab.trained.inputs`` makes). It writes results.json and results.md here and
the generated block of the README's "Use a trained model" section (real outputs of this run).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

from report import render, update_readme  # benchmarks/predict/report.py, beside this file

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
RECIPE = ROOT / "src" / "cnnlab" / "configs" / "best" / "cnn2.yaml"
RATE = re.compile(r"in ([\d.]+) s \(([\d,]+) images/s")
BUSY = re.compile(r"images/s, ([\d.]+) cores busy")


def cnnlab(*args: str) -> list[str]:
    return [sys.executable, "-m", "cnnlab", *args]


def timed(cmd: list[str]) -> dict:
    """Run ``cmd``; wall seconds, CPU seconds of it and its reaped children, its output."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}")
    return {"wall_s": wall, "cpu_s": cpu, "stdout": proc.stdout, "stderr": proc.stderr}


def measure(cmd: list[str], repeats: int, rate_of) -> dict:
    runs = []
    for _ in range(repeats):
        r = timed(cmd)
        runs.append(
            {
                "images_per_s": rate_of(r),
                "wall_s": r["wall_s"],
                "cores_busy": r["cpu_s"] / r["wall_s"],
                # predict's own figure for its predicting part (no start-up, no loading)
                "predicting_cores_busy": float(m.group(1))
                if (m := BUSY.search(r["stderr"]))
                else float("nan"),
            }
        )
    med = {k: statistics.median(x[k] for x in runs) for k in runs[0]}
    return {"command": " ".join(["cnnlab", *cmd[3:]]), **med, "runs": runs}


def eval_rate(r: dict) -> float:
    return float(json.loads(r["stdout"].strip().splitlines()[-1])["infer_images_per_s"])


def predict_rate(r: dict) -> float:
    m = RATE.search(r["stderr"])
    if not m:
        raise SystemExit(f"no rate in the predict summary:\n{r['stderr']}")
    return float(m.group(2).replace(",", ""))


def prepare(data_dir: str, work: Path) -> tuple[Path, Path, Path]:
    """The trained run, the PNG folder and the IDX file (made when missing)."""
    from PIL import Image

    from cnnlab.data.datasets import find_dataset_dir
    from cnnlab.data.idx import read_idx

    run = work / "cnn2"
    if not (run / "metrics.json").is_file():
        subprocess.run(
            cnnlab(
                "train",
                "--config",
                str(RECIPE),
                "--data-dir",
                data_dir,
                "--out",
                str(run),
                "--no-progress",
            ),
            cwd=ROOT,
            check=True,
        )
    idx = find_dataset_dir("fashion-mnist", data_dir) / "t10k-images-idx3-ubyte.gz"
    png = work / "png"
    if len(list(png.glob("*.png"))) != 10_000:
        png.mkdir(parents=True, exist_ok=True)
        for i, img in enumerate(read_idx(idx)):
            Image.fromarray(img).save(png / f"{i:05d}.png")
    return run, png, idx


def _decode(paths: list[Path]) -> int:
    from cnnlab.data.images import decode_file

    return len([decode_file(p, 28, "L", "stretch") for p in paths])


def decode_probe(png: Path) -> dict:
    """10,000 PNGs decoded by one process, two threads, two processes: images/s, cores busy."""
    files = sorted(png.glob("*.png"))
    chunks = [files[i : i + 256] for i in range(0, len(files), 256)]
    out = {}
    for name, pool in (
        ("1 process", None),
        ("2 threads", ThreadPoolExecutor),
        ("2 processes", ProcessPoolExecutor),
    ):
        self0, kids0 = (
            resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
        )
        start = time.perf_counter()
        if pool is None:
            n = sum(map(_decode, chunks))
        else:
            with pool(2) as ex:
                n = sum(ex.map(_decode, chunks))
        wall = time.perf_counter() - start
        self1, kids1 = (
            resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
        )
        cpu = sum(
            b.ru_utime - a.ru_utime + b.ru_stime - a.ru_stime
            for a, b in ((self0, self1), (kids0, kids1))
        )
        out[name] = {"images_per_s": n / wall, "cores_busy": cpu / wall}
    return out


def examples(run: Path, png: Path, work: Path) -> dict:
    """Real outputs for the README: the CLI, the Python API and the ONNX recipe."""
    picks = [png.relative_to(ROOT) / f"{i:05d}.png" for i in (0, 1, 2, 3)]
    rel = run.relative_to(ROOT)
    cli = timed(cnnlab("predict", str(rel), *map(str, picks), "--top-k", "2", "--no-progress"))
    summary = [line for line in cli["stderr"].splitlines() if not line.startswith("note:")]
    py = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import cnnlab; clf = cnnlab.load({str(rel)!r}); "
            f"print(clf.predict({[str(p) for p in picks]!r}))",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    onnx = work / "cnn2.onnx"
    subprocess.run(
        cnnlab("export", str(run), "--out", str(onnx)), cwd=ROOT, check=True, capture_output=True
    )
    recipe = subprocess.run(
        [sys.executable, "examples/onnx_predict.py", str(onnx.relative_to(ROOT)), *map(str, picks)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return {
        "picks": [str(p) for p in picks],
        "cli": cli["stdout"],
        "cli_summary": summary,
        "python": py.stdout,
        "onnx": recipe.stdout,
        "run": str(rel),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    p.add_argument("--work", default=str(ROOT / "runs" / "predict"))
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    from cnnlab.reports.environment import environment_info

    work = Path(args.work).resolve()
    run, png, idx = prepare(args.data_dir, work)
    env = environment_info()
    load_start = os.getloadavg()[0]
    out = work / "out.csv"
    res = {
        "eval": measure(cnnlab("eval", str(run), "--json"), args.repeats, eval_rate),
        "predict_idx": measure(
            cnnlab("predict", str(run), str(idx), "--out", str(out), "--no-progress"),
            args.repeats,
            predict_rate,
        ),
        "predict_png": measure(
            cnnlab("predict", str(run), str(png), "--out", str(out), "--no-progress"),
            args.repeats,
            predict_rate,
        ),
        "predict_png_1_process": measure(
            cnnlab(
                "predict", str(run), str(png), "--out", str(out), "--no-progress", "--workers", "1"
            ),
            args.repeats,
            predict_rate,
        ),
        "decode_probe": decode_probe(png),
    }
    metrics = json.loads((run / "metrics.json").read_text())
    doc = {
        "env": env,
        "load_average_at_start": load_start,
        "load_average_at_end": os.getloadavg()[0],
        "model": metrics["model"],
        "test_acc": metrics["test_acc"],
        "precision": metrics["precision"],
        "idx_vs_eval": res["predict_idx"]["images_per_s"] / res["eval"]["images_per_s"],
        "results": res,
        "examples": examples(run, png, work),
        "command": "python benchmarks/predict/run.py " + " ".join(sys.argv[1:]),
    }
    (HERE / "results.json").write_text(json.dumps(doc, indent=1) + "\n")
    (HERE / "results.md").write_text(render(doc))
    update_readme(doc)
    print(render(doc))


if __name__ == "__main__":
    main()
