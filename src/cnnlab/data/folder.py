"""Image folders (one sub-folder per class) decoded once with Pillow and cached as one tensor file.

Layouts: ``root/<class>/*.png|jpg|...`` (a stratified test split is held out, ``test_fraction``)
or ``root/train/<class>/...`` plus ``root/test/<class>/...``. Every file is decoded by
``cnnlab.data.images`` (the same rules as ``cnnlab predict``): EXIF orientation applied, 16-bit
grey scaled, transparency composited on ``background`` (default black), converted to ``mode``
and resized to ``image_size`` x ``image_size`` (handbook §11.1.1: a fixed input size), either
stretched or centre-cropped to a square first (§5.1: squares avoid distortion). ``mode="auto"``
(the default) is ``L`` (one channel) when every file is stored as a grey image, ``RGB``
otherwise, so a folder of grey PNGs trains a one-channel model.

The decoded tensors are cached in one safetensors file whose metadata holds a hash of the file
list with sizes and modification times: a changed folder is decoded again, an unchanged one
loads in seconds. Bad files (unreadable, truncated, impossible mode conversions) are reported by
path; ``on_error="skip"`` leaves them out and lists every one in the data set's ``notice``.
Files that are not images (by suffix: ``IMAGE_SUFFIXES``) are ignored and listed in the notice
too; nothing is dropped silently.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnlab.data.cifar import DataFileError
from cnnlab.data.datasets import DatasetNotFoundError, ImageDataset, default_cache_dir
from cnnlab.data.idx import temp_file_beside
from cnnlab.data.images import (
    DEFAULT_BACKGROUND,
    FITS,
    IMAGE_SUFFIXES,
    MODES,
    background_problem,
    decode_errors,
    decode_file,
    resolve_mode,
)
from cnnlab.data.loader import stratified_split
from cnnlab.registry import DATASETS, RegistryError

__all__ = ["IMAGE_SUFFIXES", "build_image_folder", "decode_image", "scan_folder"]

_FORMAT = "cnnlab-image-folder-2"  # 2: EXIF orientation, alpha on a background, mode auto
_MAX_LISTED = 20


@dataclass
class Scan:
    """What a folder holds: classes, image files per split, and anything left aside."""

    classes: tuple[str, ...]
    files: dict[str, list[tuple[Path, int]]]  # split -> [(path, class index)]
    split_layout: bool  # root/train + root/test, rather than one level of class folders
    ignored: list[Path] = field(default_factory=list)


def _entries(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _class_files(split_dir: Path, classes: list[str], scan: Scan, split: str) -> list[Path]:
    """Add ``split_dir``'s images to ``scan``; return the empty class folders."""
    empty = []
    for idx, name in enumerate(classes):
        folder = split_dir / name
        if not folder.is_dir():
            continue  # a class missing from the test folder: no test images of it
        found = 0
        for path in _entries(folder):
            if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
                scan.files[split].append((path, idx))
                found += 1
            else:
                scan.ignored.append(path)
        if not found:
            empty.append(folder)
    return empty


def scan_folder(root: Path) -> Scan:
    """Classes and files under ``root`` (either layout); raises on empty class folders."""
    if not root.is_dir():
        raise DatasetNotFoundError(f"image folder {root} does not exist or is not a directory")
    split_layout = (root / "train").is_dir() and (root / "test").is_dir()
    class_root = root / "train" if split_layout else root
    classes = [p.name for p in _entries(class_root) if p.is_dir()]
    if not classes:
        raise DatasetNotFoundError(
            f"image folder {class_root} holds no class sub-folders (expected one folder per "
            "class, e.g. cat/ and dog/, each with image files: PNG, JPEG, ...)"
        )
    scan = Scan(tuple(classes), {"train": [], "test": []}, split_layout)
    empty = _class_files(class_root, classes, scan, "train")
    if split_layout:
        extra = sorted(
            p.name for p in _entries(root / "test") if p.is_dir() and p.name not in classes
        )
        if extra:
            raise DataFileError(
                f"{root / 'test'}: class folder(s) {', '.join(extra)} have no training folder in "
                f"{class_root}"
            )
        empty += _class_files(root / "test", classes, scan, "test")
        scan.ignored += [p for p in _entries(root) if p.name not in ("train", "test")]
    if empty:
        raise DataFileError(
            f"empty class folder(s), no image files in: {', '.join(str(p) for p in empty)}"
        )
    return scan


def decode_image(
    path: Path, image_size: int, mode: str, fit: str, background: Any = DEFAULT_BACKGROUND
) -> np.ndarray:
    """One file -> uint8 (C, H, W) by ``cnnlab.data.images.decode_file`` (prediction's rules)."""
    return decode_file(path, image_size, mode, fit, background)


def _decode_all(
    files: list[tuple[Path, int]], opts: dict[str, Any], bad: list[str]
) -> tuple[torch.Tensor, torch.Tensor]:
    chans = 3 if opts["mode"] == "RGB" else 1
    size = opts["image_size"]
    images, labels = [], []
    for path, label in files:
        try:
            images.append(decode_image(path, size, opts["mode"], opts["fit"], opts["background"]))
            labels.append(label)
        except decode_errors() as exc:
            bad.append(f"{path}: {type(exc).__name__}: {exc}")
    x = np.stack(images) if images else np.zeros((0, chans, size, size), np.uint8)
    return torch.from_numpy(np.ascontiguousarray(x)), torch.tensor(labels, dtype=torch.int64)


def _manifest(scan: Scan) -> str:
    """Hash of every image file's path, size and modification time (cache validity)."""
    digest = hashlib.sha256()
    for split in ("train", "test"):
        for path, label in scan.files[split]:
            st = path.stat()
            digest.update(f"{split}\0{path}\0{label}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    digest.update(json.dumps([scan.classes, [str(p) for p in scan.ignored]]).encode())
    return digest.hexdigest()


def _listing(title: str, items: list[str]) -> str:
    return f"{title} ({len(items)}): " + "; ".join(items)


def _build(
    root: Path, scan: Scan, opts: dict[str, Any]
) -> tuple[dict[str, torch.Tensor], str | None]:
    bad: list[str] = []
    files = scan.files["train"] + scan.files["test"]
    opts = {**opts, "mode": resolve_mode(opts["mode"], [path for path, _ in files])}
    xtr, ytr = _decode_all(scan.files["train"], opts, bad)
    xte, yte = _decode_all(scan.files["test"], opts, bad)
    if bad and opts["on_error"] == "stop":
        shown = bad[:_MAX_LISTED] + (
            [f"... and {len(bad) - _MAX_LISTED} more"] if len(bad) > _MAX_LISTED else []
        )
        raise DataFileError(
            _listing("unreadable image file(s)", shown)
            + " (to leave them out, pass --set data.params.on_error=skip; in Python "
            "on_error='skip')"
        )
    if not scan.split_layout:  # one-level layout: hold out a stratified test split
        train_idx, test_idx = stratified_split(ytr, opts["test_fraction"], opts["split_seed"])
        xtr, ytr, xte, yte = xtr[train_idx], ytr[train_idx], xtr[test_idx], ytr[test_idx]
    counts = torch.bincount(ytr, minlength=len(scan.classes))
    lost = [scan.classes[i] for i in range(len(scan.classes)) if counts[i] == 0]
    if lost:
        raise DataFileError(
            f"{root}: no training images for class(es) {', '.join(lost)} after leaving out "
            "unreadable files and holding out the test split"
        )
    notes = []
    if bad:
        notes.append(_listing(f"skipped unreadable image file(s) in {root}", bad))
    if scan.ignored:
        notes.append(_listing("ignored (not an image file)", [str(p) for p in scan.ignored]))
    tensors = {"train_images": xtr.contiguous(), "train_labels": ytr,
               "test_images": xte.contiguous(), "test_labels": yte}  # fmt: skip
    return tensors, " | ".join(notes) or None


def _cache_file(root: Path, opts: dict[str, Any], cache_dir: Path) -> Path:
    key = hashlib.sha256(json.dumps([str(root.resolve()), opts], sort_keys=True).encode())
    return cache_dir / f"{root.name or 'root'}-{key.hexdigest()[:16]}.safetensors"


def _load_cache(path: Path, manifest: str) -> tuple[dict[str, torch.Tensor], dict[str, str]] | None:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != _FORMAT or meta.get("manifest") != manifest:
                return None
            return {k: f.get_tensor(k) for k in f.keys()}, meta  # noqa: SIM118
    except Exception:  # any damaged or foreign cache file is simply rebuilt
        return None


def _save_cache(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_file_beside(path)
    os.close(fd)
    try:
        save_file(tensors, str(tmp), metadata=meta)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _options(
    image_size: Any, mode: Any, fit: Any, on_error: Any, test_fraction: Any, background: Any
) -> None:
    checks = [
        (isinstance(image_size, int) and image_size >= 1,
         f"image_size must be an int >= 1, got {image_size!r}"),
        (mode in ("auto", *MODES), f"mode must be one of auto, {', '.join(MODES)}, got {mode!r}"),
        (background_problem(background) is None, background_problem(background)),
        (fit in FITS, f"fit must be one of {', '.join(FITS)}, got {fit!r}"),
        (on_error in ("stop", "skip"), f"on_error must be 'stop' or 'skip', got {on_error!r}"),
        (isinstance(test_fraction, (int, float)) and 0 < test_fraction < 1,
         f"test_fraction must be in (0, 1), got {test_fraction!r}"),
    ]  # fmt: skip
    for ok, message in checks:
        if not ok:
            raise RegistryError(f"dataset 'image_folder': {message}")


@DATASETS.register("image_folder")
def build_image_folder(
    *,
    data_dir: str | os.PathLike[str] | None = None,
    allow_sample: bool = True,
    image_size: int = 32,
    mode: str = "auto",
    fit: str = "stretch",
    background: str | int = DEFAULT_BACKGROUND,
    on_error: str = "stop",
    test_fraction: float = 0.2,
    split_seed: int = 0,
    cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
) -> ImageDataset:
    """Images in one sub-folder per class (any Pillow format), resized and cached as tensors.

    ``data_dir`` is the root folder (required). ``mode``: ``auto`` (grey when every file is),
    ``L`` or ``RGB``; ``fit``: ``stretch`` or ``center_crop``; ``background``: what transparent
    pixels become (``black``, ``white`` or a grey level 0-255). Without ``train/`` and
    ``test/`` sub-folders a stratified ``test_fraction`` of each class (``split_seed``) becomes
    the test split. The cache lives in ``cache_dir`` (default: the per-user data cache,
    ``image-folder/``). ``allow_sample`` is ignored (there is no sample).
    """
    if data_dir is None:
        raise DatasetNotFoundError(
            "image_folder needs data_dir: a folder with one sub-folder of images per class "
            "(pass --data-dir DIR or data.data_dir)"
        )
    _options(image_size, mode, fit, on_error, test_fraction, background)
    root = Path(data_dir).expanduser()
    scan = scan_folder(root)
    opts = {"image_size": image_size, "mode": mode, "fit": fit, "background": background,
            "on_error": on_error, "test_fraction": float(test_fraction),
            "split_seed": int(split_seed)}  # fmt: skip
    where = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "image-folder"
    tensors, notice = _cached_build(root, scan, opts, where if cache else None)
    t = tensors
    return ImageDataset("image_folder", t["train_images"], t["train_labels"], t["test_images"],
                        t["test_labels"], scan.classes, str(root), notice)  # fmt: skip


def _cached_build(
    root: Path, scan: Scan, opts: dict[str, Any], cache_dir: Path | None
) -> tuple[dict[str, torch.Tensor], str | None]:
    """The decoded tensors: from the cache if its manifest matches the folder, else decoded."""
    if cache_dir is None:
        return _build(root, scan, opts)
    manifest = _manifest(scan)
    path = _cache_file(root, opts, cache_dir)
    cached = _load_cache(path, manifest)
    if cached is not None:
        return cached[0], cached[1].get("notice") or None
    tensors, notice = _build(root, scan, opts)
    try:
        _save_cache(
            path, tensors, {"format": _FORMAT, "manifest": manifest, "notice": notice or ""}
        )
    except OSError as exc:  # the cache only saves time: say so and go on
        notice = " | ".join(filter(None, [notice, f"could not write the cache {path}: {exc}"]))
    return tensors, notice
