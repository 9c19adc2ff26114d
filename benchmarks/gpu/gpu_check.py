"""The GPU check of issue 23 in one invocation, inside a time budget (``run.sh`` calls this).

Phase A, at once (no timing claims but the compare's wall time): the test suite (``-x``, xdist
``-n 8``) and the CUDA tests (``tests/cuda``, with the GPU) in two processes, and ``cnnlab
compare --preset best`` beside them. Phase B, alone on the machine, timed: the side-by-side
runs against ``gpu_plain.py`` (cnn2 first), the 94%-in-5-s attempt, ResNet-20 side by side,
then torch.profiler summaries for every missed speed target. Every step runs in its own process
with a time cap cut to what is left of ``--budget``; a step that cannot start in time is
recorded as skipped, and results.json/results.md are rewritten after every step, so a run cut
short still reports what it measured.

``--dry-run`` does every step on the CPU, tiny (subsets of the data, 1-2 epochs, the CPU test
stand-ins, the anchors through ``anchor_cpu.py``): a check that the script works end to end,
not a measurement.

    python benchmarks/gpu/gpu_check.py --carry gpu_carry --out OUT [--dry-run] [--only a,b]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

import gpu_report  # noqa: E402  (beside this file)
import gpu_steps  # noqa: E402

STEPS = ("env", "tests", "compare", "side_by_side", "fast94", "profile")


class Check:
    """Paths, budget, results and the process runner shared by the steps."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.dry = args, args.dry_run
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.carry = (ROOT / args.carry).resolve()
        self.work = Path(tempfile.mkdtemp(prefix="gpu_check_"))
        self.t0 = time.monotonic()
        self.log = (self.out / "steps.log").open("a", encoding="utf-8")
        self.py = sys.executable
        self.results: dict[str, Any] = {"meta": {}, "steps": {}}
        self.data_dir = self.carry / "data"  # holds fashion-mnist/
        self.anchors = self.carry / "anchors"

    # ------------------------------------------------------------------ time
    def left(self) -> float:
        return self.args.budget - (time.monotonic() - self.t0)

    def cap(self, seconds: float) -> float:
        """``seconds``, cut to what is left of the budget (keeping 10 s to write results)."""
        return max(0.0, min(seconds, self.left() - 10))

    # ------------------------------------------------------------------ processes
    def start(self, cmd: list[str], *, env: dict[str, str] | None = None,
              output: Path | None = None) -> dict[str, Any]:  # fmt: skip
        """Start ``cmd`` in its own process group; stdout to a file (read by ``finish``),
        stderr to steps.log (or both to ``output``)."""
        stdout_path = output or self.work / f"stdout_{time.monotonic_ns()}.txt"
        out = stdout_path.open("w", encoding="utf-8")
        self.log.write(f"\n$ {shlex.join(cmd)}\n")
        self.log.flush()
        err = out if output else self.log
        full_env = {**os.environ, **(env or {})}
        proc = subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdout=out, stderr=err,
                                start_new_session=True, text=True)  # fmt: skip
        return {"proc": proc, "file": out, "path": stdout_path, "t0": time.monotonic(), "cmd": cmd}

    def finish(self, job: dict[str, Any], cap: float) -> dict[str, Any]:
        """Wait up to ``cap`` seconds from the job's start; kill its group if it runs over."""
        proc, timed_out = job["proc"], False
        try:
            proc.wait(timeout=max(0.1, cap - (time.monotonic() - job["t0"])))
        except subprocess.TimeoutExpired:
            timed_out = True
            for sig, grace in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
                try:
                    os.killpg(proc.pid, sig)
                    proc.wait(timeout=grace)
                    break
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    continue
        job["file"].close()
        text = job["path"].read_text(encoding="utf-8", errors="replace")
        seconds = time.monotonic() - job["t0"]
        self.log.write(f"# exit {proc.returncode}{' (timed out)' if timed_out else ''} "
                       f"after {seconds:.1f} s\n")  # fmt: skip
        self.log.flush()
        return {"rc": proc.returncode, "timed_out": timed_out, "seconds": seconds, "stdout": text,
                "command": shlex.join(job["cmd"])}  # fmt: skip

    def run(self, cmd: list[str], cap: float, **kw: Any) -> dict[str, Any]:
        if cap <= 1:
            return {
                "rc": None,
                "timed_out": False,
                "seconds": 0.0,
                "stdout": "",
                "skipped": "no time left in the budget",
                "command": shlex.join(cmd),
            }
        return self.finish(self.start(cmd, **kw), cap)

    # ------------------------------------------------------------------ results
    def record(self, step: str, status: str, seconds: float, **extra: Any) -> None:
        self.results["steps"][step] = {"status": status, "seconds": round(seconds, 1), **extra}
        self.save()

    def save(self) -> None:
        self.results["meta"]["elapsed_s"] = round(time.monotonic() - self.t0, 1)
        tmp = self.out / ".results.json.tmp"
        tmp.write_text(json.dumps(self.results, indent=1, default=str), encoding="utf-8")
        os.replace(tmp, self.out / "results.json")
        (self.out / "results.md").write_text(gpu_report.render(self.results), encoding="utf-8")


def step_env(c: Check) -> None:
    """GPU, driver, CUDA, torch, CPU: env.txt and results' meta."""
    probe = ("import json, torch, platform, os\n"
             "d = {'torch': torch.__version__, 'cuda': torch.version.cuda,\n"
             "     'cudnn': torch.backends.cudnn.version(), 'python': platform.python_version(),\n"
             "     'gpu_available': torch.cuda.is_available(), 'cpu_count': os.cpu_count()}\n"
             "if torch.cuda.is_available():\n"
             "    p = torch.cuda.get_device_properties(0)\n"
             "    d.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1),\n"
             "             capability='%d.%d' % (p.major, p.minor), sms=p.multi_processor_count)\n"
             "print(json.dumps(d))\n")  # fmt: skip
    res = c.run([c.py, "-c", probe], c.cap(60))
    meta = c.results["meta"]
    meta.update(gpu_report.parse_json(res["stdout"]) or {"probe_failed": res["stdout"][-500:]})
    smi = c.run(["nvidia-smi"], c.cap(20)) if not c.dry else {"stdout": "(dry run: no GPU)"}
    query = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
             "--format=csv,noheader"]  # fmt: skip
    q = c.run(query, c.cap(20)) if not c.dry else {"stdout": ""}
    if q["stdout"].strip():
        name, driver, memory, clock = [s.strip() for s in q["stdout"].splitlines()[0].split(",")]
        meta.update(smi_name=name, driver=driver, smi_memory=memory, max_sm_clock=clock)
    meta.update(date=time.strftime("%Y-%m-%d %H:%M:%S %Z"), machine=platform.machine(),
                command=shlex.join(["bash", "benchmarks/gpu/run.sh", *sys.argv[1:]]),
                dry_run=c.dry, budget_s=c.args.budget, host_cpu=platform.processor())  # fmt: skip
    meta["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, text=True,
                                        capture_output=True).stdout.strip() or None  # fmt: skip
    (c.out / "env.txt").write_text(json.dumps(meta, indent=1) + "\n\n" + smi["stdout"])
    c.record("env", "ok", 0.0)


PYTEST_SUMMARY = re.compile(r"=+ (.*?) in ([\d.]+)s")


def pytest_summary(text: str) -> dict[str, Any]:
    """Counts from pytest's last line (``3 failed, 1500 passed, 20 skipped in 80.1s``)."""
    found = PYTEST_SUMMARY.findall(text)
    if not found:
        return {}
    body, seconds = found[-1]
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (\w+)", body)}
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", text, flags=re.M)
    return {"counts": counts, "pytest_seconds": float(seconds), "failed": failed[:30]}


def tests_commands(c: Check) -> tuple[list[str], list[str]]:
    """(whole suite but tests/cuda, tests/cuda); a stand-in suite in a dry run."""
    base = [c.py, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfEs"]
    cuda = [*base, "tests/cuda", "--timeout=600"] if not c.dry else [*base, "tests/cuda"]
    if c.dry:  # the CPU's stand-in: the import graph and this CPU tests
        return [
            *base,
            "-x",
            "tests/test_import_graph.py",
            "tests/engine/test_trainer_sync.py",
        ], cuda
    xdist = ["-n", str(c.args.test_workers)] if c.args.test_workers > 1 else []
    return [*base, c.args.test_fail, *xdist, "--timeout=600", "--ignore=tests/cuda"], cuda


def phase_a(c: Check, steps: set[str]) -> None:
    """Test suite + CUDA tests + compare --preset best, all at once."""
    env = {"CNNLAB_TEST_FMNIST": str(c.data_dir / "fashion-mnist"), "OMP_NUM_THREADS": "1"}
    jobs: dict[str, tuple[dict[str, Any], float]] = {}
    if "tests" in steps:
        suite, cuda = tests_commands(c)
        cap = c.cap(c.args.tests_cap)
        jobs["tests"] = (c.start(suite, env=env, output=c.out / "tests.log"), cap)
        jobs["tests_cuda"] = (c.start(cuda, env=env, output=c.out / "tests_cuda.log"), cap)
    if "compare" in steps:
        cmd, out_dir = gpu_steps.compare_command(c)
        jobs["compare"] = (c.start(cmd), c.cap(c.args.compare_cap))
    for name, (job, cap) in jobs.items():
        res = c.finish(job, cap)
        status = "timeout" if res["timed_out"] else "ok" if res["rc"] == 0 else "failed"
        if name.startswith("tests"):
            c.results[name] = {**pytest_summary(res["stdout"]), "command": res["command"],
                               "rc": res["rc"]}  # fmt: skip
            c.record(name, status, res["seconds"])
        else:
            gpu_steps.finish_compare(c, res, out_dir, status)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--carry", default="gpu_carry", help="folder with data/ and anchors/")
    ap.add_argument("--out", default=os.environ.get("OUT", "runs/gpu_check/out"))
    ap.add_argument("--budget", type=float, default=470.0, help="seconds for the whole check")
    ap.add_argument("--dry-run", action="store_true", help="every step tiny, on the CPU")
    ap.add_argument("--only", help=f"comma-separated steps of {','.join(STEPS)}")
    ap.add_argument("--skip", default="", help="comma-separated steps to leave out")
    ap.add_argument("--models", default="cnn2,resnet20", help="side-by-side models")
    ap.add_argument("--epochs", type=int, default=3, help="side-by-side epochs (same for all)")
    ap.add_argument("--seeds", type=int, default=5, help="seeds of the 94%% attempt")
    ap.add_argument("--compare-jobs", type=int, default=6)
    ap.add_argument("--test-workers", type=int, default=8, help="pytest-xdist -n")
    ap.add_argument("--test-fail", default="-x", help="-x (the default) or --maxfail=N")
    ap.add_argument("--tests-cap", type=float, default=210.0)
    ap.add_argument("--compare-cap", type=float, default=200.0)
    args = ap.parse_args()
    if args.dry_run:
        args.test_workers, args.compare_jobs = 1, 2
        args.seeds, args.epochs = min(args.seeds, 2), min(args.epochs, 2)
    steps = set(args.only.split(",")) if args.only else set(STEPS)
    steps -= set(filter(None, args.skip.split(",")))
    unknown = steps - set(STEPS)
    if unknown:
        ap.error(f"unknown step(s) {', '.join(sorted(unknown))}; steps: {', '.join(STEPS)}")
    c = Check(args)
    if (
        not (c.carry / "data" / "fashion-mnist").is_dir()
        or not (c.anchors / "gpu_plain.py").is_file()
    ):
        ap.error(f"{c.carry}: no data/fashion-mnist or anchors/gpu_plain.py; run prepare.sh")
    if c.dry:
        c.data_dir = gpu_steps.subset_data(c.carry / "data" / "fashion-mnist", c.work / "data")
    step_env(c)
    phase_a(c, steps)
    models = [m for m in args.models.split(",") if m]
    if "side_by_side" in steps and models:
        gpu_steps.side_by_side(c, models[:1])
    if "fast94" in steps:
        gpu_steps.fast94(c)
    if "side_by_side" in steps and len(models) > 1:
        gpu_steps.side_by_side(c, models[1:])
    if "profile" in steps:
        gpu_steps.profiles(c)
    c.save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
