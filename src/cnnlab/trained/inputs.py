"""What ``cnnlab predict`` (and ``TrainedRun.predict``) reads: inputs expanded into named images.

An input is an image file (anything Pillow reads), a folder (searched recursively for image
files), a glob pattern (``"shots/**/*.jpg"``), an IDX file (``*-ubyte``, ``*-ubyte.gz``,
``*.idx``: N grey images) or a ``.npy`` array (the layouts of
:func:`cnnlab.data.images.array_to_batch`). Every image becomes one row named by its path, or
``file[i]`` for the i-th image of an array file; an input that cannot be read becomes a row
with its error instead, in its place, so nothing is dropped silently.

Image files are decoded in chunks by a pool of worker *processes* (one per core): Pillow holds
the GIL for much of a small file's decoding, and two threads decoded 10,000 28x28 PNGs at half
the rate of one (benchmarks/predict/), while two processes kept both cores busy and decoded 1.6x
as fast. Decoding and inference take turns (phases) rather than overlapping: on 2 cores, two
decoders beside torch's two inference threads made the whole run slower than the two in turn.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.data.images import (
    IMAGE_SUFFIXES,
    ImageInputError,
    array_to_batch,
    decode_errors,
    decode_file,
)

__all__ = ["ArrayFile", "Chunk", "Decoding", "Failure", "chunks", "expand_inputs"]

_GLOB_CHARS = set("*?[")
_MIN_FILES_FOR_POOL = 512  # below this, starting worker processes costs more than it saves
_PHASE_BYTES = 256 * 2**20  # decoded pixels held at once while the pool works ahead


@dataclass(frozen=True)
class ArrayFile:
    """An IDX or ``.npy`` file: many images, rows named ``path[i]``."""

    path: Path
    kind: str  # "idx" | "npy"


@dataclass(frozen=True)
class Failure:
    """An input that gave no image (missing path, unreadable file, wrong shape)."""

    name: str
    error: str


@dataclass(frozen=True)
class Decoding:
    """How files become pixels: the run's input size, mode, resize rule and background."""

    size: int
    mode: str  # "L" | "RGB"
    fit: str
    background: Any

    @property
    def chans(self) -> int:
        return 1 if self.mode == "L" else 3


@dataclass
class Chunk:
    """Consecutive rows: ``names[i]`` with ``errors[i]`` None for the rows whose pixels are in
    ``pixels`` (uint8 (n_ok, C, H, W), in row order)."""

    names: list[str]
    errors: list[str | None]
    pixels: np.ndarray

    @property
    def ok(self) -> np.ndarray:
        return np.array([e is None for e in self.errors], dtype=bool)


Unit = Path | ArrayFile | Failure


def array_kind(path: Path) -> str | None:
    """``"npy"``, ``"idx"`` or None (an image, or something Pillow will be asked about)."""
    name = path.name.lower()
    if name.endswith(".npy"):
        return "npy"
    if name.endswith(("-ubyte", "-ubyte.gz", ".idx", ".idx.gz")):
        return "idx"
    return None


def _file_unit(path: Path) -> Unit:
    kind = array_kind(path)
    return ArrayFile(path, kind) if kind else path


def _folder_units(folder: Path, ignored: list[Path]) -> list[Unit]:
    units: list[Unit] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # walk in a stable order
        for name in sorted(files):
            path = Path(root) / name
            if name.startswith("."):
                continue
            if path.suffix.lower() in IMAGE_SUFFIXES or array_kind(path):
                units.append(_file_unit(path))
            else:
                ignored.append(path)
    return units


def expand_inputs(inputs: Sequence[str | os.PathLike[str]]) -> tuple[list[Unit], list[Path]]:
    """Inputs -> units in order (files, array files, failures) and the folder files ignored
    because they are not images. A path that does not exist, a pattern that matches nothing
    and an empty folder are failures, not silence."""
    units: list[Unit] = []
    ignored: list[Path] = []
    for raw in inputs:
        text = os.fspath(raw)
        path = Path(text).expanduser()
        if path.is_dir():
            found = _folder_units(path, ignored)
            units += found or [Failure(text, "folder holds no image, IDX or .npy files")]
        elif path.is_file():
            units.append(_file_unit(path))
        elif _GLOB_CHARS & set(text):
            matches = sorted(glob.glob(os.path.expanduser(text), recursive=True))
            if not matches:
                units.append(Failure(text, "pattern matches no files"))
            for match in matches:
                m = Path(match)
                units += _folder_units(m, ignored) if m.is_dir() else [_file_unit(m)]
        else:
            units.append(Failure(text, "no such file or folder"))
    return units, ignored


def decode_chunk(paths: list[Path], how: Decoding) -> Chunk:
    """Image files -> one chunk; a file that fails keeps its row with the reason."""
    images, errors = [], []
    for path in paths:
        try:
            images.append(decode_file(path, how.size, how.mode, how.fit, how.background))
            errors.append(None)
        except decode_errors() as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
    empty = np.zeros((0, how.chans, how.size, how.size), np.uint8)
    pixels = np.stack(images) if images else empty
    return Chunk([str(p) for p in paths], errors, pixels)


def load_array_file(item: ArrayFile, how: Decoding) -> np.ndarray:
    """All images of an IDX or .npy file as uint8 (N, C, H, W); raises ImageInputError."""
    from cnnlab.data.idx import IdxError, read_idx

    what = str(item.path)
    try:
        arr = read_idx(item.path) if item.kind == "idx" else np.load(item.path, allow_pickle=False)
    except (IdxError, OSError, ValueError, EOFError) as exc:
        raise ImageInputError(f"{what}: cannot read it as {item.kind.upper()}: {exc}") from None
    if item.kind == "idx":
        if arr.ndim != 3:
            raise ImageInputError(
                f"{what}: an IDX file of images holds (N, H, W); this one holds shape "
                f"{tuple(arr.shape)}" + (" (labels?)" if arr.ndim == 1 else "")
            )
        arr = arr[:, None]  # (N, H, W) -> (N, 1, H, W): IDX images are grey
    return array_to_batch(arr, chans=how.chans, size=how.size, background=how.background,
                          what=what)  # fmt: skip


def _array_chunks(item: ArrayFile, how: Decoding, batch_size: int) -> Iterator[Chunk]:
    try:
        pixels = load_array_file(item, how)
    except ImageInputError as err:
        yield Chunk([str(item.path)], [str(err).removeprefix(f"{item.path}: ")], _none(how))
        return
    for start in range(0, len(pixels), batch_size):
        part = pixels[start : start + batch_size]
        names = [f"{item.path}[{i}]" for i in range(start, start + len(part))]
        yield Chunk(names, [None] * len(part), part)


def _none(how: Decoding) -> np.ndarray:
    return np.zeros((0, how.chans, how.size, how.size), np.uint8)


def _plan(units: list[Unit], batch_size: int) -> list[Unit | list[Path]]:
    """Consecutive image files grouped into lists of ``batch_size`` (one decoding job each)."""
    plan: list[Unit | list[Path]] = []
    for unit in units:
        if isinstance(unit, Path):
            if plan and isinstance(plan[-1], list) and len(plan[-1]) < batch_size:
                plan[-1].append(unit)
            else:
                plan.append([unit])
        else:
            plan.append(unit)
    return plan


def default_workers() -> int:
    """One decoding process per core this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def chunks(
    units: list[Unit], how: Decoding, *, batch_size: int, workers: int | None = None
) -> Iterator[Chunk]:
    """The rows of ``units`` in order, in chunks of at most ``batch_size``; image files are
    decoded by ``workers`` processes (default: one per core; 0 or 1: in this process)."""
    plan = _plan(units, batch_size)
    n_files = sum(len(p) for p in plan if isinstance(p, list))
    workers = default_workers() if workers is None else workers
    use_pool = workers > 1 and n_files >= _MIN_FILES_FOR_POOL
    pool = ProcessPoolExecutor(workers) if use_pool else None
    chunk_bytes = batch_size * how.chans * how.size * how.size
    phase = max(workers, min(64, _PHASE_BYTES // chunk_bytes)) if use_pool else 1
    try:
        yield from _ordered(plan, how, batch_size, pool, phase)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _ordered(
    plan: list[Unit | list[Path]], how: Decoding, batch_size: int, pool: Executor | None,
    phase: int,
) -> Iterator[Chunk]:  # fmt: skip
    """The chunks in input order. With a pool, in phases of ``phase`` jobs: every worker
    decodes, and the whole phase is done before the caller gets its first chunk, so the
    caller's inference (torch's threads) never competes with decoding for the cores."""
    for start in range(0, len(plan), phase):
        part = plan[start : start + phase]
        jobs = [pool.submit(decode_chunk, item, how) if pool is not None and isinstance(item, list)
                else item for item in part]  # fmt: skip
        done = [job.result() if isinstance(job, Future) else job for job in jobs]
        for item in done:
            if isinstance(item, Chunk):
                yield item
            elif isinstance(item, list):
                yield decode_chunk(item, how)
            elif isinstance(item, ArrayFile):
                yield from _array_chunks(item, how, batch_size)
            else:
                yield Chunk([item.name], [item.error], _none(how))
