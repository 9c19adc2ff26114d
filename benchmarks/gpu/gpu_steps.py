"""The measuring steps of gpu_check.py: compare, side by side, the 94% attempt, profiles."""

from __future__ import annotations

import csv
import gzip
import json
import statistics
import struct
from pathlib import Path
from typing import Any

import gpu_report

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
# resnet20 with projection shortcuts (option B) is exactly the anchor's ResNet-20.
MODEL_SETS = {"resnet20": ["--set", "model.params.shortcut=B"]}
COMPILED = ["--set", "train.compile=true", "--set", "train.compile_mode=reduce-overhead"]
# Per-run caps (seconds) on the GPU: compiling takes most of a compiled run's time.
CAPS = {"user": 60, "expert": 45, "expert-compile": 120, "cnnlab": 50, "cnnlab-compiled": 130}
DRY = {"train": 1200, "test": 300}  # images of the dry run's subset


def subset_data(src: Path, dst: Path) -> Path:
    """The first DRY images of each split as IDX files in ``dst/fashion-mnist`` (dry runs)."""
    out = dst / "fashion-mnist"
    out.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", DRY["train"]), ("t10k", DRY["test"])):
        for kind, item in (("images", 28 * 28), ("labels", 1)):
            name = f"{split}-{kind}-idx{3 if kind == 'images' else 1}-ubyte.gz"
            raw = gzip.decompress((src / name).read_bytes())
            head = 16 if kind == "images" else 8
            dims = list(struct.unpack(f">{(head - 4) // 4}I", raw[4:head]))
            dims[0] = n
            body = raw[head : head + n * item]
            (out / name).write_bytes(gzip.compress(raw[:4] + struct.pack(f">{len(dims)}I", *dims)
                                                   + body))  # fmt: skip
    return dst


def _device_args(c) -> list[str]:
    return ["--device", "cpu"] if c.dry else []


def compare_command(c) -> tuple[list[str], Path]:
    out = c.work / "compare"
    cmd = [c.py, "-m", "cnnlab", "compare", "--preset", "best", "--data-dir", str(c.data_dir),
           "--jobs", str(c.args.compare_jobs), "--out", str(out), "--json"]  # fmt: skip
    if c.dry:
        cmd += ["--models", "softmax,cnn1", "--epochs", "1", "--set", "train.device=cpu"]
    return cmd, out


def finish_compare(c, res: dict[str, Any], out: Path, status: str) -> None:
    parsed = gpu_report.parse_json(res["stdout"]) or {}
    rows = [{k: r.get(k) for k in ("model", "test_acc", "train_seconds", "params", "epochs")}
            for r in parsed.get("rows", [])]  # fmt: skip
    c.results["compare"] = {
        "command": res["command"], "wall_s": round(res["seconds"], 1), "rows": rows,
        "compare_wall_s": parsed.get("wall_seconds"), "report": (out / "report.html").is_file(),
        "beside": "ran beside the test suite (phase A): a conservative wall time",
        "target_s": 180, "rc": res["rc"],
    }  # fmt: skip
    c.record("compare", status, res["seconds"])


def _epochs_from_history(run: Path) -> list[dict[str, float]]:
    with (run / "history.csv").open() as f:
        return [
            {
                "seconds": float(r["epoch_seconds"]),
                "images_per_s": float(r["train_images_per_s"]),
                "test_acc": float(r["test_acc"]),
            }
            for r in csv.DictReader(f)
        ]


def _anchor_cmd(c, model: str, variant: str) -> list[str]:
    name = "expert" if variant.startswith("expert") else "user"
    args = ["--model", model, "--variant", name, "--epochs", str(c.args.epochs), "--batch", "100"]
    if variant.endswith("compile"):
        args.append("--compile")
    plain = str(c.anchors / "gpu_plain.py")
    if c.dry:  # the anchors are CUDA-only: run them on the CPU through the shim
        return [c.py, str(HERE / "anchor_cpu.py"), plain, *args]
    return [c.py, plain, *args]


def _cnnlab_cmd(c, model: str, variant: str, run: Path) -> list[str]:
    cmd = [c.py, "-m", "cnnlab", "train", "--model", model, "--epochs", str(c.args.epochs),
           "--data-dir", str(c.data_dir), "--seed", "0", "--no-progress", "--out", str(run),
           "--json", *_device_args(c), *MODEL_SETS.get(model, [])]  # fmt: skip
    return cmd + (COMPILED if variant == "cnnlab-compiled" else [])


def summarise_run(epochs: list[dict[str, float]]) -> dict[str, Any]:
    """Median images/s of the epochs after the first (compilation, cuDNN's first calls), all
    epochs if there is only one; the last epoch's test accuracy."""
    timed = epochs[1:] or epochs
    return {"images_per_s": statistics.median(e["images_per_s"] for e in timed),
            "first_epoch_s": epochs[0]["seconds"], "test_acc": epochs[-1]["test_acc"],
            "epochs": epochs}  # fmt: skip


def side_by_side(c, models: list[str]) -> None:
    """Anchor loops and cnnlab, same model, batch 100, same epochs, each in a fresh process."""
    env = {"FMNIST_DIR": str(c.data_dir / "fashion-mnist")}
    section = c.results.setdefault("side_by_side", {"epochs": c.args.epochs, "batch": 100,
                                                    "models": {}})  # fmt: skip
    for model in models:
        runs: dict[str, Any] = {}
        section["models"][model] = runs
        for variant in ("user", "expert", "expert-compile", "cnnlab", "cnnlab-compiled"):
            run_dir = c.work / f"sbs_{model}_{variant}"
            if variant.startswith("cnnlab"):
                cmd = _cnnlab_cmd(c, model, variant, run_dir)
            else:
                cmd = _anchor_cmd(c, model, variant)
            res = c.run(cmd, c.cap(CAPS[variant] * (3 if c.dry else 1)), env=env)
            entry: dict[str, Any] = {"command": res["command"], "wall_s": round(res["seconds"], 1)}
            try:
                if res.get("skipped") or res["rc"] != 0:
                    raise ValueError(res.get("skipped") or f"exit {res['rc']}"
                                     + (" (timed out)" if res["timed_out"] else ""))  # fmt: skip
                if variant.startswith("cnnlab"):
                    epochs = _epochs_from_history(run_dir)
                    entry["runtime"] = json.loads((run_dir / "env.json").read_text())["runtime"]
                else:
                    epochs = gpu_report.parse_json(res["stdout"])["epochs"]
                entry.update(summarise_run(epochs))
            except (ValueError, KeyError, TypeError, OSError) as err:
                entry["error"] = str(err)
            runs[variant] = entry
            c.save()
        section["models"][model] = runs
        section.setdefault("verdicts", {})[model] = gpu_report.speed_verdict(runs)
        c.record(f"side_by_side:{model}", "ok", sum(r["wall_s"] for r in runs.values()))


def _fast_recipe(c) -> tuple[Path, str | None, str]:
    """The 94% recipe: configs/fast/fast94.yaml (time-to-accuracy issue) and its inference,
    else the best preset's vgg_small (what existed before it)."""
    fast = ROOT / "src" / "cnnlab" / "configs" / "fast"
    if (fast / "fast94.yaml").is_file():
        import yaml

        targets = yaml.safe_load((fast / "preset.yaml").read_text()).get("targets", {})
        tta = targets.get("fast94", {}).get("tta", "none")
        return fast / "fast94.yaml", None if tta == "none" else tta, "configs/fast/fast94.yaml"
    return ROOT / "src/cnnlab/configs/best/vgg_small.yaml", None, "configs/best/vgg_small.yaml"


def fast94(c) -> None:
    """94% of the full test set within 5 s of training: median of the seeds, one process."""
    recipe, tta, label = _fast_recipe(c)
    seeds = ",".join(str(s) for s in range(c.args.seeds))
    cmd = [c.py, str(HERE / "seeds_run.py"), "--config", str(recipe), "--seeds", seeds,
           "--data-dir", str(c.data_dir), "--out", str(c.work / "fast94"),
           *(["--tta", tta] if tta else []), *_device_args(c)]  # fmt: skip
    if c.dry:
        cmd += ["--epochs", "1"]
    res = c.run(cmd, c.cap(150 if not c.dry else 400))
    parsed = gpu_report.parse_json(res["stdout"]) or {}
    c.results["fast94"] = {"recipe": label, "tta": tta, "command": res["command"],
                           "wall_s": round(res["seconds"], 1), **parsed,
                           **gpu_report.fast_verdict(parsed.get("seeds", []), tta)}  # fmt: skip
    status = "ok" if res["rc"] == 0 else "timeout" if res["timed_out"] else "failed"
    c.record("fast94", status, res["seconds"], **({"skipped": res["skipped"]}
                                                   if res.get("skipped") else {}))  # fmt: skip


def profiles(c) -> None:
    """torch.profiler over real trainer steps for each missed speed target (all in a dry run):
    kernel time vs launch gaps vs host syncs, appended to profile.txt."""
    wanted: list[tuple[str, list[str]]] = []
    for model, verdict in c.results.get("side_by_side", {}).get("verdicts", {}).items():
        if c.dry or not verdict.get("met"):  # profile cnnlab's fastest variant of the model
            compiled = verdict.get("best_cnnlab") == "cnnlab-compiled"
            sets = [*MODEL_SETS.get(model, []), *(COMPILED if compiled else [])]
            wanted.append((model, ["--model", model, *sets]))
    fast = c.results.get("fast94", {})
    if fast and (c.dry or not fast.get("met")):
        recipe, _, _ = _fast_recipe(c)
        wanted.append(("fast94", ["--config", str(recipe)]))
    section = c.results.setdefault("profiles", {})
    with (c.out / "profile.txt").open("a", encoding="utf-8") as txt:
        for name, args in wanted:
            cmd = [
                c.py,
                str(HERE / "profile_train.py"),
                *args,
                "--data-dir",
                str(c.data_dir),
                *_device_args(c),
                *(["--warmup", "3", "--steps", "3"] if c.dry else []),
            ]
            res = c.run(cmd, c.cap(90 if not c.dry else 200))
            summary = gpu_report.parse_json(res["stdout"])
            section[name] = summary or {"error": res.get("skipped") or f"exit {res['rc']}",
                                        "command": res["command"]}  # fmt: skip
            txt.write(f"## {name}: {res['command']}\n{res['stdout']}\n")
            c.save()
    c.record("profile", "ok", 0.0, profiled=list(section))
