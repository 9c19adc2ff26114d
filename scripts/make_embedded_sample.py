"""Make the Fashion-MNIST sample embedded in cnnlab (src/cnnlab/data/embedded/fashion-mnist/).

How the shipped sample was made:

    python scripts/make_embedded_sample.py /work/shared/data/fashion-mnist

- Source: the four Fashion-MNIST IDX files (Xiao, Rasul, Vollgraf 2017; MIT licence) in
  /work/shared/data/fashion-mnist (see its README for their provenance).
- Selection: ``numpy.random.default_rng(SEED)`` with SEED = 20170825; for each class 0..9 in
  turn, 600 training indices are drawn without replacement from that class's training
  examples, then for each class 100 test indices from its test examples. The chosen indices
  are sorted, so the sample keeps the official order (classes stay interleaved).
- Output: train 6,000 and test 1,000 images (28x28 uint8) with their labels, written as the
  four standard IDX file names, gzip level 9 without timestamp, so rerunning the script on the
  same source reproduces the files byte for byte. Total size 3,058,845 bytes; sha256:
    train-images-idx3-ubyte.gz  4a8263420a767a7f9ecae26ab7a2d822efcd426689ed657c5a4a8fa31b92123b
    train-labels-idx1-ubyte.gz  9459a29aad3ef74b16e18195b755bf5cff584be2528862d438a4eec39a57988a
    t10k-images-idx3-ubyte.gz   dd88f7ff0cd146d6e79bc2bc2b07bf7364a4354b36fca37ce83bc7e8dcb3dc67
    t10k-labels-idx1-ubyte.gz   bf40849dc5f640245129441dbce93a9b5a33ec9245a389d6caa20d0f9ef0b0a1

The loader (cnnlab.data.datasets) falls back to this sample only when no full copy of
Fashion-MNIST is found, and then tells the user that accuracies on it are not comparable with
the full set.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np

from cnnlab.data.download import IDX_FILE_STEMS
from cnnlab.data.idx import read_image_label_pair, write_idx

SEED = 20170825  # fixed once; changing it changes the shipped files
PER_CLASS = {"train": 600, "test": 100}
NUM_CLASSES = 10
DEFAULT_SOURCE = Path("/work/shared/data/fashion-mnist")
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "src/cnnlab/data/embedded/fashion-mnist"


def stratified_indices(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """``per_class`` indices of each class drawn without replacement, sorted ascending."""
    chosen = []
    for k in range(NUM_CLASSES):
        pool = np.flatnonzero(labels == k)
        if len(pool) < per_class:
            raise ValueError(f"class {k} has only {len(pool)} examples, need {per_class}")
        chosen.append(rng.choice(pool, size=per_class, replace=False))
    return np.sort(np.concatenate(chosen))


def _find(source: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (source / name).is_file():
            return source / name
    raise FileNotFoundError(f"{source}: missing {stem}(.gz)")


def make_sample(source: Path, out: Path) -> list[Path]:
    """Draw the sample from the IDX files in ``source`` and write it to ``out``."""
    rng = np.random.default_rng(SEED)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for split in ("train", "test"):
        images, labels = read_image_label_pair(
            _find(source, IDX_FILE_STEMS[f"{split}_images"]),
            _find(source, IDX_FILE_STEMS[f"{split}_labels"]),
        )
        idx = stratified_indices(labels, PER_CLASS[split], rng)
        for role, array in (("images", images[idx]), ("labels", labels[idx].astype(np.uint8))):
            path = out / f"{IDX_FILE_STEMS[f'{split}_{role}']}.gz"
            written.append(write_idx(path, array, gzip=True, compresslevel=9))
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "source",
        nargs="?",
        type=Path,
        default=DEFAULT_SOURCE,
        help=f"directory with the four IDX files (default {DEFAULT_SOURCE})",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    args = parser.parse_args()
    for path in make_sample(args.source, args.out):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        print(f"{path}  {path.stat().st_size:,} bytes  sha256 {digest}")


if __name__ == "__main__":
    main()
