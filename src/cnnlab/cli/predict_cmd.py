"""``cnnlab predict RUN INPUT...``: what a trained run sees in new pictures.

Inputs are image files, folders, glob patterns, IDX files and ``.npy`` arrays
(``cnnlab.trained.inputs``); each is decoded with the run's own rules and normalisation
(``cnnlab.trained.predict``). One row per image with its top-k classes and probabilities, or
the reason it could not be read; a summary on stderr; exit status 1 when any input failed.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from cnnlab.cli.common import log
from cnnlab.cli.errors import UsageError
from cnnlab.cli.predict_output import FORMATS, format_for, render

_MAX_LISTED = 20  # failures named in the summary (all of them are in the results)


def register(sub) -> None:
    p = sub.add_parser(
        "predict", help="classify images, folders, IDX or .npy files with a trained run",
        description="Classify new images with a trained run, preprocessed exactly as in its "
        "training: grey or colour, resize rule, EXIF orientation, transparency, normalisation.",
    )  # fmt: skip
    p.add_argument("run", help="run directory or checkpoint.safetensors")
    p.add_argument(
        "inputs", nargs="+", metavar="INPUT",
        help="image file, folder (recursive), glob pattern, IDX file or .npy array",
    )  # fmt: skip
    p.add_argument("--top-k", type=int, default=3, metavar="K", help="classes per image (3)")
    p.add_argument(
        "--tta", metavar="VIEWS",
        help="test-time augmentation: a preset (flip, shift, flip_shift) or views such as "
        "identity,hflip; the softmax is averaged over the views",
    )  # fmt: skip
    p.add_argument("--batch-size", type=int, default=256, metavar="N")
    p.add_argument("--format", choices=FORMATS, help="csv (default), json, jsonl or md; "
                   "default from the --out suffix")  # fmt: skip
    p.add_argument("--out", metavar="FILE", help="write the results here (default stdout)")
    p.add_argument(
        "--on-error", choices=("skip", "fail"), default="skip",
        help="skip: report a bad input in its row and go on (default); fail: stop at it",
    )  # fmt: skip
    p.add_argument("--device", help="cpu | cuda | cuda:N (default: the run's)")
    p.add_argument("--workers", type=int, metavar="N",
                   help="processes decoding image files (default one per core)")  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_predict)


def _check_args(args) -> None:
    if args.top_k < 1:
        raise UsageError(f"--top-k must be >= 1, got {args.top_k}")
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.workers is not None and args.workers < 0:
        raise UsageError(f"--workers must be >= 0, got {args.workers}")
    if args.out and not Path(args.out).expanduser().parent.is_dir():
        raise UsageError(f"--out {args.out}: the folder {Path(args.out).parent} does not exist")


def _check_tta(run: Any, tta: str | None) -> None:
    """Refuse unknown views before any image is read; warn about views training never saw."""
    if tta is None:
        return
    from cnnlab.errors import EnsembleError
    from cnnlab.evaluation.tta import PRESETS, make_view, preset_views, untaught_views

    views = preset_views(tta) if tta in PRESETS else tta.split(",")
    try:
        for view in views:
            make_view(view)
    except EnsembleError as err:
        raise UsageError(f"--tta {tta}: {err}") from None
    missing = untaught_views(views, run.config.data.augment or [])
    if missing:
        log(f"note: --tta {tta}: the run never trained with {', '.join(missing)}; views it was "
            "not taught usually lower the accuracy (handbook §13.1.1)")  # fmt: skip


def _rows(chunk: Any, probs: Any, classes: tuple[str, ...], k: int) -> list[dict[str, Any]]:
    """The chunk's rows in order: top-k for the decoded ones, the error for the others."""
    top_p, top_i = probs.topk(min(k, len(classes)), dim=1)
    tops = iter(zip(top_i.tolist(), top_p.tolist(), strict=True))
    rows = []
    for name, error in zip(chunk.names, chunk.errors, strict=True):
        if error is not None:
            rows.append({"input": name, "top_k": [], "error": error})
            continue
        idx, ps = next(tops)
        top = [{"label": classes[i], "prob": p} for i, p in zip(idx, ps, strict=True)]
        rows.append({"input": name, "top_k": top, "error": None})
    return rows


def _progress(total: int, batch_size: int, disabled: bool) -> Any:
    from tqdm import tqdm

    quiet = disabled or total < 2 * batch_size  # only large inputs get a bar
    return tqdm(total=total, unit="img", file=sys.stderr, disable=True if quiet else None,
                dynamic_ncols=True, leave=False)  # fmt: skip


def _stop_at_first_failure(chunk: Any) -> None:
    for name, error in zip(chunk.names, chunk.errors, strict=True):
        if error is not None:
            raise UsageError(
                f"{name}: {error} (--on-error fail stops at the first input that cannot be "
                "read; nothing was written)"
            )


def predict_rows(run: Any, units: list[Any], args) -> list[dict[str, Any]]:
    """Decode (a process pool) and classify (batches on the run's device) every unit."""
    from cnnlab.trained.inputs import chunks
    from cnnlab.trained.predict import decoding, infer

    rows: list[dict[str, Any]] = []
    bar = _progress(sum(isinstance(u, Path) for u in units), args.batch_size, args.no_progress)
    try:
        for chunk in chunks(units, decoding(run), batch_size=args.batch_size,
                            workers=args.workers):  # fmt: skip
            if args.on_error == "fail":
                _stop_at_first_failure(chunk)
            probs = infer(run, chunk.pixels, tta=args.tta, batch_size=args.batch_size)
            rows += _rows(chunk, probs, run.classes, args.top_k)
            if bar.total is not None and len(rows) > bar.total:
                bar.total = len(rows)  # array files add rows beyond the image files counted
            bar.update(len(chunk.names))
    finally:
        bar.close()
    return rows


def _cpu_seconds() -> float:
    """User + system CPU of this process and its finished children (the decoding workers)."""
    try:
        import resource
    except ImportError:  # not on a Unix: the summary leaves the figure out
        return float("nan")
    own, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _summary(
    rows: list[dict[str, Any]], seconds: float, cpu_s: float, load_s: float, run: Any
) -> str:
    failed = [r for r in rows if r["error"]]
    read = len(rows) - len(failed)
    rate = f"{read / seconds:,.0f} images/s" if seconds > 0 and read else "-"
    busy = f", {cpu_s / seconds:.2f} cores busy" if seconds > 0 and cpu_s == cpu_s else ""
    counts = Counter(r["top_k"][0]["label"] for r in rows if not r["error"])
    lines = [
        f"cnnlab predict: {read:,} image(s) read, {len(failed):,} failed, in {seconds:.2f} s "
        f"({rate}{busy}; loading the run {load_s:.2f} s) with {run.spec['name']} ({run.path}), "
        f"{run.runtime.device} {run.runtime.precision}",
    ]
    if counts:
        lines.append("predicted: " + ", ".join(f"{c} {n:,}" for c, n in counts.most_common()))
    for r in failed[:_MAX_LISTED]:
        lines.append(f"failed: {r['input']}: {r['error']}")
    if len(failed) > _MAX_LISTED:
        lines.append(f"... and {len(failed) - _MAX_LISTED:,} more failures (see the results)")
    return "\n".join(lines)


def cmd_predict(args) -> int:
    from cnnlab.engine.checkpoint import atomic_write_text
    from cnnlab.trained.inputs import expand_inputs
    from cnnlab.trained.run import load

    _check_args(args)
    start = time.perf_counter()
    run = load(args.run, device=args.device)
    _check_tta(run, args.tta)
    units, ignored = expand_inputs(args.inputs)
    if ignored:
        log(f"note: ignored {len(ignored):,} file(s) in the folders that are not images, IDX or "
            f".npy (e.g. {ignored[0]})")  # fmt: skip
    begin, cpu_begin = time.perf_counter(), _cpu_seconds()
    rows = predict_rows(run, units, args)
    fmt = format_for(args.out, args.format)
    header = {"run": str(run.path), "model": run.spec["name"], "classes": list(run.classes),
              "top_k": args.top_k, "tta": args.tta}  # fmt: skip
    text = render(rows, fmt, k=min(args.top_k, len(run.classes)), header=header)
    if args.out:
        try:
            atomic_write_text(Path(args.out).expanduser(), text)
        except OSError as err:
            raise UsageError(f"--out {args.out}: cannot write it: {err}") from None
    else:
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except BrokenPipeError:  # `cnnlab predict ... | head`: the reader left, not an error
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    seconds, cpu_s = time.perf_counter() - begin, _cpu_seconds() - cpu_begin
    log(_summary(rows, seconds, cpu_s, begin - start, run))
    if args.out:
        log(f"wrote {args.out} ({fmt}, {len(rows):,} rows)")
    return 1 if any(r["error"] for r in rows) else 0
