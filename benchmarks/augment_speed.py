"""Time batched augmentation pipelines on the CPU (a benchmark script, not a test).

Usage: python benchmarks/augment_speed.py [--repeats 50]

Prints the median milliseconds per batch of a crop+flip and a crop+flip+erasing pipeline on a
Fashion-MNIST-like (100, 1, 28, 28) batch and a CIFAR-like (128, 3, 32, 32) batch, plus the
cost of the geometric ops that resample with grid_sample. The numbers depend on the machine
and its load; compare ratios taken in one run.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from cnnlab.data.augment import build_augmentation

PIPELINES = {
    "crop+flip": [{"name": "random_crop", "padding": 2}, {"name": "hflip"}],
    "crop+flip+erasing": [{"name": "random_crop", "padding": 2}, {"name": "hflip"},
                          {"name": "random_erasing"}],
    "square_crop+rotate": [{"name": "random_square_crop"}, {"name": "rotate"}],
}  # fmt: skip
SHAPES = [(100, 1, 28, 28), (128, 3, 32, 32)]


def time_ms(fn, x: torch.Tensor, repeats: int) -> float:
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):  # warm-up
        fn(x, gen)
    times = []
    for i in range(repeats):
        gen.manual_seed(i)
        start = time.perf_counter()
        fn(x, gen)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument(
        "--threads", type=int, nargs="+", default=[1, torch.get_num_threads()],
        help="intra-op thread counts to try (on a busy machine 1 thread is often fastest)",
    )  # fmt: skip
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {platform.machine()} {platform.processor()}")
    for threads in dict.fromkeys(args.threads):
        torch.set_num_threads(threads)
        for shape in SHAPES:
            x = torch.randn(shape)
            c = shape[1]
            for name, specs in PIPELINES.items():
                aug = build_augmentation(specs, mean=(0.5,) * c, std=(0.25,) * c)
                ms = time_ms(aug, x, args.repeats)
                print(f"threads={threads} {shape!s:18s} {name:20s} {ms:8.3f} ms/batch")


if __name__ == "__main__":
    main()
