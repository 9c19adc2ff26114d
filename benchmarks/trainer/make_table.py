"""results.json of bench_trainer.py -> results.md (the table quoted in the README)."""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path


def main(path: str = str(Path(__file__).with_name("results.json"))) -> None:
    data = json.loads(Path(path).read_text())
    m = data["machine"]
    lines = [
        "# cnnlab trainer vs a plain PyTorch loop",
        "",
        f"Measured {m['date']} on {m['cpu']} ({m['cpu_count']} cores, {m['cpu_capability']}), "
        f"Python {m['python']}, torch {m['torch']}, cnnlab {m['cnnlab']}.",
        f"Command: `{data['command']}`",
        "",
        "| model | variant | params | train img/s (median; min-max over epochs and rounds) "
        "| vs plain | test acc after the last epoch (per round) |",
        "|---|---|---:|---:|---:|---|",
    ]
    for model, block in data["models"].items():
        for variant, s in block["summary"].items():
            accs = ", ".join(f"{100 * a:.2f}%" for a in s["final_test_acc"])
            lines.append(
                f"| {model} | {variant} | {s['params']:,} | {s['median_images_per_s']:,.0f} "
                f"({s['min_images_per_s']:,.0f}-{s['max_images_per_s']:,.0f}) "
                f"| {s['speedup_vs_plain']:.2f}x | {accs} |"
            )
    lines += ["", "Per-epoch training images/s and test accuracy of every run:", ""]
    for model, block in data["models"].items():
        for r in block["runs"]:
            per = "; ".join(f"{e['images_per_s']:,.0f} img/s, {100 * e['test_acc']:.2f}%"
                            for e in r["epochs"])  # fmt: skip
            lines.append(f"- {model} {r['variant']}: {per}")
    mean_acc = {
        (model, v): statistics.fmean(s["final_test_acc"])
        for model, block in data["models"].items()
        for v, s in block["summary"].items()
    }
    lines += ["", "Mean final test accuracy: " + "; ".join(
        f"{mv[0]} {mv[1]} {100 * a:.2f}%" for mv, a in mean_acc.items())]  # fmt: skip
    profile = f"profile{Path(path).stem.removeprefix('results')}.md"  # profile_avx2.md, ...
    if not Path(path).with_name(profile).is_file():
        profile = "profile.md"
    lines += ["", *target_lines(data, profile)]
    out = Path(path).with_suffix(".md")  # results.json -> results.md, results_avx2.json -> ...md
    out.write_text("\n".join(lines) + "\n")
    print(out.read_text())


TARGET = 2.0  # the foundation issue: at least 2x the plain loop's training throughput


def target_lines(data: dict, profile: str = "profile.md") -> list[str]:
    """The verdict per model and cnnlab variant against the 2x target; a miss says by how much
    and points at the profile of where a step's time goes."""
    lines = [f"Target: at least {TARGET:g}x the plain loop's training images/s."]
    for model, block in data["models"].items():
        for variant, s in block["summary"].items():
            if variant == "plain":
                continue
            ratio = s["speedup_vs_plain"]
            if ratio >= TARGET:
                lines.append(f"- {model} {variant}: {ratio:.2f}x, met.")
            else:
                lines.append(f"- {model} {variant}: {ratio:.2f}x, missed by {TARGET - ratio:.2f}x "
                             f"({100 * (1 - ratio / TARGET):.0f}% short); where the time goes: "
                             f"{profile}, discussed in README.md.")  # fmt: skip
    return lines


if __name__ == "__main__":
    main(*sys.argv[1:])
