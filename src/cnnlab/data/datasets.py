"""In-memory image classification data sets: Fashion-MNIST, MNIST and a synthetic set.

A data set is a handful of tensors held in memory (DESIGN "Speed"): uint8 images (N, C, H, W)
and int64 labels per split. IDX data sets are looked up in order in the explicit ``data_dir``,
the ``CNNLAB_DATA`` environment variable and the per-user cache; each place may hold the four
files directly or in a ``<place>/<name>/`` sub-directory. When no copy of Fashion-MNIST exists
anywhere, a stratified 6,000/1,000 sample shipped inside the package is used instead, with a
notice for the user (see scripts/make_embedded_sample.py for how it was drawn).
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from cnnlab.data.download import IDX_FILE_STEMS, default_cache_dir, manual_instructions
from cnnlab.data.idx import IdxError, read_image_label_pair
from cnnlab.registry import DATASETS

__all__ = [
    "DATA_ENV_VAR",
    "FASHION_MNIST_CLASSES",
    "MNIST_CLASSES",
    "DatasetNotFoundError",
    "ImageDataset",
    "dataset_dir_candidates",
    "default_cache_dir",
    "find_dataset_dir",
    "list_datasets",
    "load_dataset",
    "load_idx_dataset",
]

DATA_ENV_VAR = "CNNLAB_DATA"  # the one environment variable the package reads
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
MNIST_CLASSES = tuple(str(d) for d in range(10))
_IDX_DATASETS = {"fashion-mnist": FASHION_MNIST_CLASSES, "mnist": MNIST_CLASSES}
_SAMPLE_SOURCE = "embedded sample"


class DatasetNotFoundError(FileNotFoundError):
    """No complete copy of a data set where it was looked for (or a partial one)."""

    def __str__(self) -> str:  # show the message alone, without an errno prefix
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True, eq=False, repr=False)
class ImageDataset:
    """Train and test splits as in-memory tensors, with class names and provenance.

    Images are uint8 (N, C, H, W), contiguous; labels int64 (N,). ``notice`` is a message the
    caller must show the user (set when a stand-in such as the embedded sample is used).
    """

    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: tuple[str, ...]
    source: str
    notice: str | None = None

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            images = getattr(self, f"{split}_images")
            labels = getattr(self, f"{split}_labels")
            if images.dtype != torch.uint8 or images.ndim != 4 or not images.is_contiguous():
                raise ValueError(
                    f"{self.name}: {split}_images must be contiguous uint8 (N, C, H, W), found "
                    f"{images.dtype} with shape {tuple(images.shape)}"
                )
            if labels.dtype != torch.int64 or labels.ndim != 1 or len(labels) != len(images):
                raise ValueError(
                    f"{self.name}: {split}_labels must be int64 (N,) with N = {len(images)}, "
                    f"found {labels.dtype} with shape {tuple(labels.shape)}"
                )
            if len(labels) and (labels.min() < 0 or labels.max() >= len(self.classes)):
                raise ValueError(
                    f"{self.name}: {split}_labels must lie in [0, {len(self.classes)}), found "
                    f"[{int(labels.min())}, {int(labels.max())}]"
                )
        if self.train_images.shape[1:] != self.test_images.shape[1:]:
            raise ValueError(
                f"{self.name}: train images are {tuple(self.train_images.shape[1:])} but test "
                f"images are {tuple(self.test_images.shape[1:])}"
            )

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_chans(self) -> int:
        return int(self.train_images.shape[1])

    @property
    def image_size(self) -> int:
        """Side length H of the (square) images."""
        h, w = self.train_images.shape[2:]
        if h != w:
            raise ValueError(f"{self.name}: images are {h}x{w}, not square; use the shape")
        return int(h)

    @property
    def class_counts(self) -> torch.Tensor:
        """Number of training examples per class, int64 (num_classes,)."""
        return torch.bincount(self.train_labels, minlength=self.num_classes)

    def __repr__(self) -> str:
        c, h, w = self.train_images.shape[1:]
        return (
            f"ImageDataset({self.name!r}, train={len(self.train_labels)}, "
            f"test={len(self.test_labels)}, image={c}x{h}x{w}, classes={self.num_classes}, "
            f"source={self.source!r})"
        )


def _locate_files(directory: Path) -> tuple[dict[str, Path], list[str]]:
    """The IDX files present in ``directory`` (.gz preferred) and the names of those missing."""
    found: dict[str, Path] = {}
    missing: list[str] = []
    for role, stem in IDX_FILE_STEMS.items():
        for fname in (f"{stem}.gz", stem):
            if (directory / fname).is_file():
                found[role] = directory / fname
                break
        else:
            missing.append(f"{stem}(.gz)")
    return found, missing


def _places(name: str, data_dir: str | os.PathLike[str] | None) -> list[tuple[str, Path]]:
    """The (label, root) places searched, in lookup order."""
    if data_dir is not None:
        return [("data_dir", Path(data_dir).expanduser())]
    places = []
    env = os.environ.get(DATA_ENV_VAR)
    if env:
        places.append((DATA_ENV_VAR, Path(env).expanduser()))
    places.append(("cache", default_cache_dir()))
    return places


def _layouts(name: str, root: Path) -> list[Path]:
    """``root/name`` then ``root`` itself, unless ``root`` is named after another data set."""
    # MNIST and Fashion-MNIST share file names: never read .../fashion-mnist/ as mnist.
    direct = [] if root.name in _IDX_DATASETS and root.name != name else [root]
    return [root / name, *direct]


def dataset_dir_candidates(name: str, data_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """Every directory searched for ``name``'s files, in lookup order (for messages)."""
    return [cand for _, root in _places(name, data_dir) for cand in _layouts(name, root)]


def _empty_dir_message(name: str, root: Path) -> str:
    """Why an explicit data directory holds no usable set, and how to get one."""
    looked = " and ".join(str(c) for c in _layouts(name, root))
    target = root
    if root not in _layouts(name, root):
        why = f"{root} is named after another data set, so its files are not read as {name}"
        target = root / name
    else:
        why = f"missing all of {', '.join(_locate_files(root)[1])}"
    return (
        f"no {name} data set in the data directory {root}: looked in {looked}; {why}. "
        f"{manual_instructions(name, target)}"
    )


def find_dataset_dir(name: str, data_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The first directory holding all four IDX files of ``name``, or None if none does.

    Raises:
        DatasetNotFoundError: a searched directory holds only some of the files, the
            explicit ``data_dir`` (or ``CNNLAB_DATA``) does not exist, or the explicit
            ``data_dir`` holds no complete set.
    """
    for label, root in _places(name, data_dir):
        if label != "cache" and not root.is_dir():
            what = "data directory" if label == "data_dir" else f"{DATA_ENV_VAR} directory"
            state = "is not a directory" if root.exists() else "does not exist"
            raise DatasetNotFoundError(f"{what} {root} {state}. {manual_instructions(name, root)}")
        for cand in _layouts(name, root):
            found, missing = _locate_files(cand)
            if found and missing:
                raise DatasetNotFoundError(
                    f"incomplete {name} data set in {cand}: found {len(found)} of 4 files, "
                    f"missing {', '.join(missing)}. {manual_instructions(name, cand)}"
                )
            if not missing:
                return cand
        if label == "data_dir":
            raise DatasetNotFoundError(_empty_dir_message(name, root))
    return None


def load_idx_dataset(
    name: str,
    directory: Path | str,
    classes: tuple[str, ...],
    *,
    source: str | None = None,
    notice: str | None = None,
) -> ImageDataset:
    """Load the four IDX files in ``directory``, one uint8 tensor per split (no per-sample work)."""
    directory = Path(directory)
    files, missing = _locate_files(directory)
    if missing:
        raise DatasetNotFoundError(f"{directory}: missing {', '.join(missing)}")
    splits = {}
    for split in ("train", "test"):
        images, labels = read_image_label_pair(
            files[f"{split}_images"], files[f"{split}_labels"], num_classes=len(classes)
        )
        # (N, H, W) -> (N, 1, H, W): grey images have one channel.
        splits[split] = (torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels))
    (xtr, ytr), (xte, yte) = splits["train"], splits["test"]
    if xtr.shape[1:] != xte.shape[1:]:
        raise IdxError(
            f"image sizes differ: {files['train_images']} holds {tuple(xtr.shape[2:])} images, "
            f"{files['test_images']} holds {tuple(xte.shape[2:])}"
        )
    return ImageDataset(name, xtr, ytr, xte, yte, classes, source or str(directory), notice)


def _load_embedded(name: str, notice: str) -> ImageDataset:
    """The sample shipped in ``cnnlab/data/embedded/<name>/`` (works from an installed wheel)."""
    folder = resources.files("cnnlab.data") / "embedded" / name
    with contextlib.ExitStack() as stack:
        # as_file gives a real path even when the package is zipped.
        paths = {
            stem: stack.enter_context(resources.as_file(folder / f"{stem}.gz"))
            for stem in IDX_FILE_STEMS.values()
        }
        directory = next(iter(paths.values())).parent
        return load_idx_dataset(
            name, directory, _IDX_DATASETS[name], source=_SAMPLE_SOURCE, notice=notice
        )


def _sample_notice(name: str, searched: list[Path]) -> str:
    return (
        f"No copy of the full {name} data set was found (searched: "
        f"{', '.join(str(p) for p in searched)}), so cnnlab is using the embedded sample "
        "bundled with it: a stratified sample of 6,000 training and 1,000 test images (600 "
        "and 100 per class). Accuracies measured on it are NOT comparable with results on the "
        "full 60,000/10,000 set. To get the full set, run `cnnlab data fetch fashion-mnist`, or "
        "point cnnlab at a directory holding the four IDX files with `--data-dir DIR` or the "
        f"{DATA_ENV_VAR}=DIR environment variable."
    )


def _load_idx_by_name(
    name: str, data_dir: Any, allow_sample: bool, has_sample: bool
) -> ImageDataset:
    directory = find_dataset_dir(name, data_dir)
    if directory is not None:
        return load_idx_dataset(name, directory, _IDX_DATASETS[name])
    searched = dataset_dir_candidates(name, data_dir)
    if has_sample and allow_sample:
        return _load_embedded(name, _sample_notice(name, searched))
    why = " (the embedded sample was disabled)" if has_sample else ""
    raise DatasetNotFoundError(
        f"{name} data set not found{why}; searched {', '.join(str(p) for p in searched)}. "
        f"{manual_instructions(name)}"
    )


@DATASETS.register("fashion-mnist")
def build_fashion_mnist(
    *, data_dir: str | os.PathLike[str] | None = None, allow_sample: bool = True
) -> ImageDataset:
    """Fashion-MNIST: 60,000/10,000 grey 28x28 clothing images, 10 classes (Xiao et al. 2017)."""
    return _load_idx_by_name("fashion-mnist", data_dir, allow_sample, has_sample=True)


@DATASETS.register("mnist")
def build_mnist(
    *, data_dir: str | os.PathLike[str] | None = None, allow_sample: bool = True
) -> ImageDataset:
    """MNIST: 60,000/10,000 grey 28x28 handwritten digits (LeCun et al. 1998); no sample."""
    return _load_idx_by_name("mnist", data_dir, allow_sample, has_sample=False)


@DATASETS.register("synthetic")
def build_synthetic(
    *,
    data_dir: str | os.PathLike[str] | None = None,
    allow_sample: bool = True,
    num_classes: int = 10,
    in_chans: int = 1,
    image_size: int = 28,
    train_size: int = 1000,
    test_size: int = 200,
    noise: float = 0.15,
    seed: int = 0,
) -> ImageDataset:
    """Synthetic blobs: each class a bright Gaussian spot at its own place, plus pixel noise.

    Deterministic from ``seed``; a tiny model separates the classes within a few steps, so
    tests can train end to end without any files. ``data_dir``/``allow_sample`` are ignored.
    """
    checks = {"num_classes": (num_classes, 2), "in_chans": (in_chans, 1),
              "image_size": (image_size, 4), "train_size": (train_size, 1),
              "test_size": (test_size, 1)}  # fmt: skip
    for key, (value, low) in checks.items():
        if int(value) != value or value < low:
            raise ValueError(f"synthetic: {key} must be an integer >= {low}, got {value!r}")
    if noise < 0:
        raise ValueError(f"synthetic: noise must be >= 0, got {noise!r}")
    gen = torch.Generator().manual_seed(seed)
    # Class centres evenly spaced on a circle around the image centre, in [0, 1] coordinates.
    angle = 2 * math.pi * torch.arange(num_classes) / num_classes
    centres = 0.5 + 0.3 * torch.stack([torch.sin(angle), torch.cos(angle)], dim=1)  # (K, 2)
    grid = (torch.arange(image_size) + 0.5) / image_size
    yy, xx = torch.meshgrid(grid, grid, indexing="ij")
    dist2 = (yy - centres[:, 0, None, None]) ** 2 + (xx - centres[:, 1, None, None]) ** 2
    blobs = torch.exp(-dist2 / (2 * 0.1**2))  # (K, H, W)
    gain = 0.5 + 0.5 * torch.rand(num_classes, in_chans, 1, 1, generator=gen)  # colour per class
    protos = 0.1 + 0.8 * gain * blobs[:, None]  # (K, C, H, W)

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = (torch.arange(n) % num_classes)[torch.randperm(n, generator=gen)]
        x = protos[labels] + noise * torch.randn(n, in_chans, image_size, image_size, generator=gen)
        return (x.clamp(0, 1) * 255).round().to(torch.uint8).contiguous(), labels

    (xtr, ytr), (xte, yte) = split(train_size), split(test_size)
    classes = tuple(f"class{k}" for k in range(num_classes))
    return ImageDataset("synthetic", xtr, ytr, xte, yte, classes, f"synthetic (seed={seed})")


def list_datasets() -> list[str]:
    """Names of every registered data set."""
    return DATASETS.names()


def load_dataset(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    allow_sample: bool = True,
    **options: Any,
) -> ImageDataset:
    """Load a registered data set by name; ``options`` go to its builder (checked by name)."""
    return DATASETS.build(name, data_dir=data_dir, allow_sample=allow_sample, **options)
