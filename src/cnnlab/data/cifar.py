"""CIFAR-10 from the official *binary* archive, read in bulk with numpy (nothing is unpickled).

Krizhevsky 2009, https://www.cs.toronto.edu/~kriz/cifar.html, binary version: the archive
``cifar-10-binary.tar.gz`` holds ``cifar-10-batches-bin/data_batch_1.bin`` .. ``_5.bin`` (training)
and ``test_batch.bin``; each is a run of 3073-byte records, one label byte (0-9) then 3072
pixel bytes: the 1024 red, 1024 green and 1024 blue values of a 32x32 image in row-major
order, which is exactly the (3, 32, 32) layout of a torch image.

The data set is looked up like the IDX ones (``--data-dir``, ``CNNLAB_DATA``, the per-user cache;
each place directly or in a ``cifar10/`` sub-directory), either unpacked
(``cifar-10-batches-bin/``) or as the archive, whose members are read in memory without
extracting anything. ``cnnlab data fetch cifar10`` downloads the archive (MD5-checked).
"""

from __future__ import annotations

import os
import tarfile
import zlib
from pathlib import Path

import numpy as np
import torch

from cnnlab.data.datasets import DatasetNotFoundError, ImageDataset, dataset_dir_candidates
from cnnlab.data.download import manual_instructions
from cnnlab.data.idx import IdxError
from cnnlab.registry import DATASETS

__all__ = [
    "ARCHIVE",
    "CIFAR10_CLASSES",
    "FOLDER",
    "DataFileError",
    "build_cifar10",
    "load_cifar10",
    "parse_records",
]

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
ARCHIVE = "cifar-10-binary.tar.gz"
FOLDER = "cifar-10-batches-bin"
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILES = ("test_batch.bin",)
META_FILE = "batches.meta.txt"
SIDE = 32
RECORD = 1 + 3 * SIDE * SIDE  # label byte + 3072 pixel bytes
OFFICIAL_SIZES = (50_000, 10_000)


class DataFileError(IdxError):
    """A data file that is corrupt, truncated or inconsistent (reported like an IdxError)."""


def parse_records(
    blob: bytes | np.ndarray, source: str, num_classes: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR binary records -> uint8 images (N, 3, 32, 32) and int64 labels (N,).

    Raises:
        DataFileError: the size is not a whole number of 3073-byte records, or a label is
            outside ``[0, num_classes)``; the message names ``source``.
    """
    raw = np.frombuffer(blob, dtype=np.uint8) if isinstance(blob, bytes) else blob
    if raw.size == 0 or raw.size % RECORD:
        whole, rest = divmod(raw.size, RECORD)
        raise DataFileError(
            f"{source}: {raw.size:,} bytes is not a whole number of {RECORD}-byte CIFAR records "
            f"(1 label byte + 3072 pixel bytes): {whole:,} records and {rest:,} bytes left over; "
            "the file is truncated or not a CIFAR-10 binary batch"
        )
    rows = raw.reshape(-1, RECORD)  # (N, 3073)
    labels = rows[:, 0]
    bad = np.flatnonzero(labels >= num_classes)
    if bad.size:
        first = int(bad[0])
        raise DataFileError(
            f"{source}: {bad.size:,} label(s) outside [0, {num_classes}): first bad value "
            f"{int(labels[first])} in record {first:,}; not a CIFAR-10 binary batch"
        )
    images = np.ascontiguousarray(rows[:, 1:]).reshape(-1, 3, SIDE, SIDE)
    return images, labels.astype(np.int64)


def _class_names(text: str | None) -> tuple[str, ...]:
    """Names from batches.meta.txt when it lists exactly ten, else the published ones."""
    if text is None:
        return CIFAR10_CLASSES
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    return names if len(names) == len(CIFAR10_CLASSES) else CIFAR10_CLASSES


def _read_folder(folder: Path) -> tuple[dict[str, np.ndarray], str | None]:
    blobs = {f: np.fromfile(folder / f, dtype=np.uint8) for f in TRAIN_FILES + TEST_FILES}
    meta = folder / META_FILE
    return blobs, meta.read_text(encoding="utf-8", errors="replace") if meta.is_file() else None


def _read_archive(path: Path) -> tuple[dict[str, np.ndarray], str | None]:
    """The six batch files (and the class names) from the archive, in one streaming pass."""
    wanted = {f"{FOLDER}/{f}": f for f in (*TRAIN_FILES, *TEST_FILES, META_FILE)}
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:
                name = wanted.get(member.name.removeprefix("./"))
                if name is None or not member.isfile():
                    continue
                handle = tar.extractfile(member)
                assert handle is not None
                found[name] = handle.read()
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise DataFileError(f"{path}: not a readable .tar.gz archive ({exc})") from None
    missing = [f"{FOLDER}/{f}" for f in (*TRAIN_FILES, *TEST_FILES) if f not in found]
    if missing:
        raise DataFileError(f"{path}: the archive lacks {', '.join(missing)}")
    meta = found.pop(META_FILE, None)
    blobs = {k: np.frombuffer(v, dtype=np.uint8) for k, v in found.items()}
    return blobs, meta.decode("utf-8", errors="replace") if meta is not None else None


def _probe(cand: Path) -> Path | None:
    """The unpacked folder or archive in ``cand``; raises if a folder is only partly there."""
    for folder in (cand / FOLDER, cand):
        present = [f for f in (*TRAIN_FILES, *TEST_FILES) if (folder / f).is_file()]
        if len(present) == len(TRAIN_FILES) + len(TEST_FILES):
            return folder
        if present:
            missing = sorted(set(TRAIN_FILES + TEST_FILES) - set(present))
            raise DatasetNotFoundError(
                f"incomplete CIFAR-10 in {folder}: missing {', '.join(missing)}. "
                f"{manual_instructions('cifar10', cand)}"
            )
    return cand / ARCHIVE if (cand / ARCHIVE).is_file() else None


def find_cifar10(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The unpacked batch folder or the archive to read (first found in lookup order)."""
    if data_dir is not None and not Path(data_dir).expanduser().is_dir():
        raise DatasetNotFoundError(
            f"data directory {data_dir} does not exist or is not a directory. "
            f"{manual_instructions('cifar10', data_dir)}"
        )
    searched = dataset_dir_candidates("cifar10", data_dir)
    for cand in searched:
        hit = _probe(cand)
        if hit is not None:
            return hit
    raise DatasetNotFoundError(
        f"cifar10 data set not found; searched {', '.join(str(p) for p in searched)}. "
        f"{manual_instructions('cifar10', searched[0] if data_dir is not None else None)}"
    )


def load_cifar10(path: str | os.PathLike[str]) -> ImageDataset:
    """Read CIFAR-10 from an unpacked batch folder or from the .tar.gz archive."""
    path = Path(path)
    blobs, meta = _read_folder(path) if path.is_dir() else _read_archive(path)
    where = (lambda f: path / f) if path.is_dir() else (lambda f: f"{path}:{FOLDER}/{f}")
    splits = []
    for files in (TRAIN_FILES, TEST_FILES):
        parts = [parse_records(blobs[f], str(where(f))) for f in files]
        images = np.concatenate([p[0] for p in parts])
        labels = np.concatenate([p[1] for p in parts])
        splits.append((torch.from_numpy(images), torch.from_numpy(labels)))
    (xtr, ytr), (xte, yte) = splits
    notice = None
    if (len(ytr), len(yte)) != OFFICIAL_SIZES:
        notice = (
            f"CIFAR-10 at {path} holds {len(ytr):,} training and {len(yte):,} test images, not "
            "the official 50,000/10,000: results are not comparable with published ones"
        )
    return ImageDataset("cifar10", xtr, ytr, xte, yte, _class_names(meta), str(path), notice)


@DATASETS.register("cifar10")
def build_cifar10(
    *, data_dir: str | os.PathLike[str] | None = None, allow_sample: bool = True
) -> ImageDataset:
    """CIFAR-10: 50,000/10,000 colour 32x32 images, 10 classes (Krizhevsky 2009); no sample."""
    return load_cifar10(find_cifar10(data_dir))
