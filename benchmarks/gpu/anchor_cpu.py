"""Dry runs only: ``gpu_plain.py`` (CUDA-only) on the CPU, so that benchmarks/gpu/ can be run end
to end on a machine without a GPU. The anchor's source is run with its four CUDA calls swapped
for CPU ones, and its IDX reader accepts a subset of the data (its own asserts want 60,000
images). Timings from it mean nothing.

    python benchmarks/gpu/anchor_cpu.py gpu_carry/anchors/gpu_plain.py --model cnn2 ...
"""

from __future__ import annotations

import os
import sys

# (what the anchor says, what it says on the CPU); each must be found, or the anchor changed.
SWAPS = [
    ('torch.device("cuda")', 'torch.device("cpu")'),
    ("torch.cuda.synchronize()", "None"),
    ("torch.cuda.get_device_name(0)", '"cpu (dry run)"'),
    ('torch.autocast("cuda"', 'torch.autocast("cpu"'),
]


def main() -> None:
    anchor = os.path.abspath(sys.argv[1])
    sys.argv = [anchor, *sys.argv[2:]]
    sys.path.insert(0, os.path.dirname(anchor))
    import fmnist

    def load_uint8(data_dir=None):
        d = data_dir or fmnist.DEFAULT_DIR
        names = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                 "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")  # fmt: skip
        return tuple(fmnist._read_idx(os.path.join(d, n)) for n in names)

    fmnist.load_uint8 = load_uint8  # load_normalized looks it up at call time
    with open(anchor, encoding="utf-8") as f:
        source = f.read()
    for cuda, cpu in SWAPS:
        if cuda not in source:
            raise SystemExit(f"anchor_cpu.py: {anchor} no longer contains {cuda!r}")
        source = source.replace(cuda, cpu)
    exec(compile(source, anchor, "exec"), {"__name__": "__main__", "__file__": anchor})


if __name__ == "__main__":
    main()
