"""Verdicts and results.md for gpu_check.py (issue 23's targets), from results.json alone.

python benchmarks/gpu/gpu_report.py OUT/results.json     # rewrite OUT/results.md
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

TARGETS = {"vs_user": 3.0, "vs_expert": 1.5, "fast_seconds": 5.0, "fast_acc": 0.94,
           "compare_seconds": 180.0}  # fmt: skip
# One seed per loop: test accuracies within half a point count as equal (the seed-to-seed
# spread of these models after a few epochs is a few tenths of a point).
ACC_TOL = 0.005
CNNLAB = ("cnnlab", "cnnlab-compiled")


def parse_json(text: str) -> dict[str, Any] | None:
    """The last line of ``text`` that parses as a JSON object, else None."""
    for line in reversed((text or "").strip().splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    return None


def _speed(runs: dict[str, Any], key: str) -> float | None:
    return (runs.get(key) or {}).get("images_per_s")


def speed_verdict(runs: dict[str, Any]) -> dict[str, Any]:
    """cnnlab's fastest variant against the everyday loop (>= 3x) and the expert eager loop
    (>= 1.5x), with equal accuracy after equal epochs; by how much a target is missed."""
    mine = {v: _speed(runs, v) for v in CNNLAB if _speed(runs, v)}
    user, expert = _speed(runs, "user"), _speed(runs, "expert")
    if not mine or not user or not expert:
        return {"met": False, "why": "a run is missing (see its error)"}
    best = max(mine, key=lambda v: mine[v])
    out: dict[str, Any] = {
        "best_cnnlab": best,
        "images_per_s": mine[best],
        "vs_user": mine[best] / user,
        "vs_expert": mine[best] / expert,
    }
    if _speed(runs, "expert-compile"):
        out["vs_expert_compile"] = mine[best] / _speed(runs, "expert-compile")
    if len(mine) == 2:
        out["compile_speedup"] = mine["cnnlab-compiled"] / mine["cnnlab"]
    acc = runs[best]["test_acc"]
    out["acc_delta_vs_user"] = acc - runs["user"]["test_acc"]
    out["acc_delta_vs_expert"] = acc - runs["expert"]["test_acc"]
    out["acc_equal"] = all(abs(out[k]) <= ACC_TOL or out[k] > 0
                           for k in ("acc_delta_vs_user", "acc_delta_vs_expert"))  # fmt: skip
    misses = []
    for key in ("vs_user", "vs_expert"):
        if out[key] < TARGETS[key]:
            misses.append(
                f"{key.replace('vs_', 'against the ')} loop {out[key]:.2f}x of "
                f"{TARGETS[key]:.1f}x ({TARGETS[key] / out[key]:.2f}x short)"
            )
    if not out["acc_equal"]:
        misses.append("accuracy below an anchor by more than half a point")
    out["met"], out["misses"] = not misses, misses
    return out


def fast_verdict(seeds: list[dict[str, Any]], tta: str | None) -> dict[str, Any]:
    """94% within 5 s of training, medians over the seeds (the recipe's inference judged)."""
    done = [s for s in seeds if "train_seconds" in s]
    if not done:
        return {"met": False}
    key = "tta_acc" if tta else "test_acc"
    sec = statistics.median(s["train_seconds"] for s in done)
    acc = statistics.median(s[key] for s in done)
    misses = []
    if sec > TARGETS["fast_seconds"]:
        misses.append(f"median training {sec:.2f} s, {sec - TARGETS['fast_seconds']:.2f} s over")
    if acc < TARGETS["fast_acc"]:
        misses.append(f"median accuracy {acc:.2%}, {(TARGETS['fast_acc'] - acc) * 100:.2f} "
                      "points short")  # fmt: skip
    return {
        "median_train_seconds": sec,
        "median_acc": acc,
        "judged": key,
        "met": not misses and len(done) == len(seeds),
        "misses": misses,
    }


def _fmt(v: Any, spec: str = ".0f") -> str:
    return "—" if v is None else format(v, spec)


def _header(r: dict[str, Any]) -> list[str]:
    m = r.get("meta", {})
    lines = ["# cnnlab on a GPU (issue 23)", ""]
    if m.get("dry_run"):
        lines += ["**DRY RUN on the CPU: tiny data, no GPU. The numbers below check that the "
                  "script runs end to end; they measure nothing.**", ""]  # fmt: skip
    lines += [f"- GPU: {m.get('gpu', m.get('smi_name', 'none'))}, driver {m.get('driver', '—')}, "
              f"{m.get('gpu_memory_gib', '—')} GiB, compute capability {m.get('capability', '—')}",
              f"- torch {m.get('torch')}, CUDA {m.get('cuda')}, cuDNN {m.get('cudnn')}, Python "
              f"{m.get('python')}, {m.get('cpu_count')} CPUs; commit {m.get('git_commit') or '—'}",
              f"- {m.get('date')}; `{m.get('command')}`; budget {m.get('budget_s')} s, "
              f"used {m.get('elapsed_s')} s", ""]  # fmt: skip
    return lines


def _steps(r: dict[str, Any]) -> list[str]:
    lines = ["## Steps", "", "| step | status | seconds | note |", "|---|---|---:|---|"]
    for name, s in r.get("steps", {}).items():
        lines.append(f"| {name} | {s['status']} | {s['seconds']} | {s.get('skipped', '')} |")
    for name in ("tests", "tests_cuda"):
        t = r.get(name)
        if t:
            counts = ", ".join(f"{n} {k}" for k, n in t.get("counts", {}).items()) or "no summary"
            lines += ["", f"`{t['command']}`: {counts}"]
            lines += [f"- failed: `{f}`" for f in t.get("failed", [])]
    return [*lines, ""]


def _side_by_side(r: dict[str, Any]) -> list[str]:
    sbs = r.get("side_by_side")
    if not sbs:
        return []
    lines = ["## Side by side with ../shared/anchors/gpu_plain.py",
             "", f"Batch {sbs['batch']}, {sbs['epochs']} epochs each, one fresh process per run; "
             "images/s: median of the epochs after the first (which holds compilation); "
             "test accuracy after the last epoch.", ""]  # fmt: skip
    for model, runs in sbs.get("models", {}).items():
        lines += [f"### {model}", "", "| loop | images/s | first epoch s | test acc | note |",
                  "|---|---:|---:|---:|---|"]  # fmt: skip
        for variant, e in runs.items():
            note = e.get("error") or e.get("runtime", "")
            lines.append(f"| {variant} | {_fmt(e.get('images_per_s'), ',.0f')} | "
                         f"{_fmt(e.get('first_epoch_s'), '.2f')} | "
                         f"{_fmt(e.get('test_acc'), '.4f')} | {note} |")  # fmt: skip
        v = sbs.get("verdicts", {}).get(model)
        if v and "vs_user" in v:
            lines += [
                "",
                f"{v['best_cnnlab']}: {v['vs_user']:.2f}x the everyday loop (target "
                f"3x), {v['vs_expert']:.2f}x the expert eager loop (target 1.5x)"
                + (
                    f", {v['vs_expert_compile']:.2f}x the compiled expert loop"
                    if "vs_expert_compile" in v
                    else ""
                )
                + (
                    f"; compile on/off {v['compile_speedup']:.2f}x"
                    if "compile_speedup" in v
                    else ""
                )
                + f"; accuracy {v['acc_delta_vs_expert'] * 100:+.2f} points vs the expert "
                f"loop. **{'met' if v['met'] else 'NOT met: ' + '; '.join(v['misses'])}**",
            ]
        elif v:
            lines += ["", f"**NOT met: {v.get('why')}**"]
        lines.append("")
    return lines


def _fast_and_compare(r: dict[str, Any]) -> list[str]:
    lines = []
    f = r.get("fast94")
    if f:
        lines += ["## 94% within 5 s of training", "", f"Recipe {f['recipe']}, inference "
                  f"{f.get('tta') or 'single view'}; `{f['command']}`", "",
                  "| seed | train s | test acc | with TTA |", "|---:|---:|---:|---:|"]  # fmt: skip
        for s in f.get("seeds", []):
            lines.append(f"| {s.get('seed')} | {_fmt(s.get('train_seconds'), '.2f')} | "
                         f"{_fmt(s.get('test_acc'), '.4f')} | {_fmt(s.get('tta_acc'), '.4f')} |"
                         + (f" {s['error']}" if s.get("error") else ""))  # fmt: skip
        verdict = "met" if f.get("met") else "NOT met: " + "; ".join(f.get("misses") or ["no run"])
        lines += [
            "",
            f"Median {_fmt(f.get('median_train_seconds'), '.2f')} s, "
            f"{_fmt(f.get('median_acc'), '.4f')} ({f.get('judged')}): **{verdict}**",
            "",
        ]
    c = r.get("compare")
    if c:
        ok = c["rc"] == 0 and c["wall_s"] <= TARGETS["compare_seconds"]
        lines += [
            "## cnnlab compare --preset best",
            "",
            f"`{c['command']}`: {c['wall_s']} s "
            f"end to end ({c['beside']}); target <= 180 s: **{'met' if ok else 'NOT met'}**",
            "",
            "| model | test acc | train s | epochs |",
            "|---|---:|---:|---:|",
        ]
        for row in c["rows"]:
            lines.append(
                f"| {row['model']} | {_fmt(row.get('test_acc'), '.4f')} | "
                f"{_fmt(row.get('train_seconds'), '.1f')} | {row.get('epochs')} |"
            )
        lines.append("")
    return lines


def _profiles(r: dict[str, Any]) -> list[str]:
    p = r.get("profiles")
    if not p:
        return []
    lines = ["## Where the time goes (torch.profiler, missed targets)", "",
             "| run | ms/step | GPU busy | launch gaps | host sync | kernels/step | top kernel |",
             "|---|---:|---:|---:|---:|---:|---|"]  # fmt: skip
    for name, s in p.items():
        if "error" in s:
            lines.append(f"| {name} | — | — | — | — | — | {s['error']} |")
            continue
        lines.append(
            f"| {name} | {_fmt(s.get('ms_per_step'), '.3f')} | "
            f"{_fmt(s.get('gpu_busy_frac'), '.0%')} | {_fmt(s.get('gap_frac'), '.0%')} | "
            f"{_fmt(s.get('sync_frac'), '.0%')} | {_fmt(s.get('kernels_per_step'), '.0f')} "
            f"| {(s.get('top_kernels') or [['—']])[0][0][:60]} |"
        )
    return [*lines, "", "Full tables: profile.txt.", ""]


def render(r: dict[str, Any]) -> str:
    parts = [_header(r), _steps(r), _side_by_side(r), _fast_and_compare(r), _profiles(r)]
    return "\n".join(line for part in parts for line in part) + "\n"


if __name__ == "__main__":
    path = Path(sys.argv[1])
    path.with_name("results.md").write_text(render(json.loads(path.read_text())))
