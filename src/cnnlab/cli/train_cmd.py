"""``cnnlab train`` and ``cnnlab eval``."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from cnnlab.cli.common import (
    add_config_args,
    config_from_args,
    log,
    print_json,
    shortcut_overrides,
)
from cnnlab.cli.errors import UsageError

# cnnlab.evaluation.tta.PRESETS, spelled out so the CLI starts without importing torch
TTA_PRESETS = ("flip", "shift", "flip_shift")

_SHORTCUTS = {
    "model": "model.name",
    "dataset": "data.dataset",
    "epochs": "train.epochs",
    "data_dir": "data.data_dir",
    "seed": "seed",
    "device": "train.device",
}


def register_train(sub) -> None:
    p = sub.add_parser("train", help="train one model and write a run directory")
    p.add_argument("--model", help="model name (cnnlab list models)")
    p.add_argument("--dataset", help="data set name (default fashion-mnist)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    add_config_args(p)
    p.add_argument("--out", metavar="DIR", help="run directory (default runs/train/MODEL-TIME)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--no-progress", action="store_true", help="no live progress bar")
    p.add_argument(
        "--procs",
        type=int,
        default=1,
        metavar="N",
        help="train with N local processes (DistributedDataParallel via torchrun)",
    )
    p.add_argument("--json", action="store_true", help="print final metrics as JSON (last line)")
    p.set_defaults(func=cmd_train)


def cmd_train(args) -> int:
    import os

    from cnnlab.config import load_config
    from cnnlab.engine import distributed as D
    from cnnlab.engine.runtime import pick_device
    from cnnlab.training.spine import run_training

    if args.procs > 1:
        return _relaunch_with_torchrun(args.procs)
    dist = D.dist_info_from_env(os.environ)
    extra = shortcut_overrides(args, _SHORTCUTS)
    if args.no_progress:
        extra.append("train.progress=false")
    if args.resume:
        if not args.out:
            raise UsageError("--resume needs --out RUN_DIR (the run to continue)")
        if args.config or args.model or args.dataset:
            raise UsageError("--resume continues the saved config; do not pass --config/--model")
        out = Path(args.out)
        if not (out / "config.yaml").is_file():
            raise UsageError(f"--resume: {out} holds no cnnlab run (no config.yaml)")
        cfg = load_config(out / "config.yaml", [*extra, *args.overrides])
    else:
        cfg = config_from_args(args, extra)
        out = Path(args.out) if args.out else _default_out(cfg.model.name)
    D.init_process_group(dist, pick_device(cfg.train.device).type)
    try:
        out = Path(D.broadcast_object(str(out), dist))  # one timestamped name for all ranks
        metrics = run_training(cfg, out, resume=args.resume, log=log, stream=sys.stderr, dist=dist)
        D.shutdown(clean=True)
    finally:
        D.shutdown()
    if not dist.is_main:
        return 0
    log(
        f"{cfg.model.name}: test acc {metrics['test_acc']:.4f}, loss {metrics['test_loss']:.4f}, "
        f"{metrics['params']:,} params, {metrics['train_seconds']:.1f}s training -> {out}"
    )
    if args.json:
        print_json({k: v for k, v in metrics.items() if k != "test"} | {"run_dir": str(out)})
    return 0


def _relaunch_with_torchrun(nprocs: int) -> int:
    """``cnnlab train --procs N ...`` = ``torchrun --standalone --nproc-per-node N -m cnnlab
    train ...``: the same run on N local processes."""
    import os
    import subprocess

    from cnnlab.engine.distributed import launch_command, threads_per_process

    argv = _without_procs(sys.argv[1:])
    env = {**os.environ, "OMP_NUM_THREADS": str(threads_per_process(nprocs))}
    return subprocess.call(launch_command(nprocs, argv), env=env)


def _without_procs(argv: list[str]) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--procs":
            skip = True
        elif not a.startswith("--procs="):
            out.append(a)
    return out


def _default_out(model: str) -> Path:
    return Path("runs") / "train" / f"{model}-{time.strftime('%Y%m%d-%H%M%S')}"


def register_eval(sub) -> None:
    p = sub.add_parser("eval", help="re-evaluate a saved run on its test set")
    p.add_argument("checkpoint", help="run directory or checkpoint.safetensors")
    p.add_argument("--data-dir", metavar="DIR")
    p.add_argument(
        "--split", choices=("test", "train"), default="test",
        help="evaluate on the test set (default) or the whole training set",
    )  # fmt: skip
    p.add_argument(
        "--tta", choices=TTA_PRESETS, metavar="PRESET",
        help="test-time augmentation: average the predictions over the views of a preset "
        f"({', '.join(TTA_PRESETS)}); useful when the model trained with those transformations",
    )  # fmt: skip
    p.add_argument("--json", action="store_true", help="print metrics as JSON (last line)")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args) -> int:
    from cnnlab.trained.evaluation import evaluate_run

    split = args.split
    metrics = evaluate_run(
        args.checkpoint, data_dir=args.data_dir, log=log, split=split, tta=args.tta
    )
    views = f" with {args.tta} test-time augmentation" if args.tta else ""
    print(
        f"{metrics['model']}{views} on {metrics['dataset']} ({metrics['data_source']}), "
        f"{metrics['num_images']:,} {split} images: {split} acc {metrics[f'{split}_acc']:.4f}, "
        f"loss {metrics[f'{split}_loss']:.4f}, {metrics['params']:,} params, "
        f"{metrics['infer_images_per_s']:,.0f} img/s inference"
    )
    if args.json:
        print_json({k: v for k, v in metrics.items() if k != split})
    return 0
