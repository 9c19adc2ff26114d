"""``cnnlab augment --show | --list``: preview augmentations as a PNG grid (handbook Ch. 5)."""

from __future__ import annotations

from cnnlab.cli.common import log
from cnnlab.cli.errors import UsageError

DEFAULT_PIPELINE = "[{name: random_crop, padding: 2}, {name: hflip}]"


def register(sub) -> None:
    p = sub.add_parser(
        "augment",
        help="preview or list data augmentations",
        description="Write a grid of training images (rows) and augmented versions (columns) "
        "to a PNG, or list the available augmentations.",
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--show", action="store_true", help="write a preview grid to --out")
    what.add_argument("--list", action="store_true", help="list augmentations and their options")
    p.add_argument(
        "--dataset", default="fashion-mnist", help="data set name (default: %(default)s)"
    )
    p.add_argument("--data-dir", metavar="DIR", help="directory holding the data set files")
    p.add_argument(
        "--pipeline",
        metavar="YAML_OR_SPEC",
        default=DEFAULT_PIPELINE,
        help="a YAML file, inline YAML such as '[{name: rotate, angles: [-15, 15]}, hflip]', "
        "or comma-separated names (default: %(default)s)",
    )
    p.add_argument("--out", metavar="PNG", default="augment.png", help="output file (%(default)s)")
    p.add_argument("--n", type=int, default=8, help="sample images, one per row (%(default)s)")
    p.add_argument(
        "--versions", type=int, default=5, help="augmented copies per image (%(default)s)"
    )
    p.add_argument("--seed", type=int, default=0, help="picks the images and the augmentations")
    p.set_defaults(func=cmd_augment)


def cmd_augment(args) -> int:
    if args.list:
        return _list()
    if args.n < 1 or args.versions < 1:
        raise UsageError(f"--n and --versions must be >= 1, got {args.n} and {args.versions}")
    from pathlib import Path

    from cnnlab.viz.png import figure_to_png

    grid, ds, aug = preview_grid(
        args.dataset, args.data_dir, args.pipeline, n=args.n, versions=args.versions, seed=args.seed
    )
    if ds.notice:
        log(f"note: {ds.notice}")
    out = Path(args.out)
    if out.parent and not out.parent.is_dir():
        raise UsageError(f"--out: the directory {out.parent} does not exist")
    out.write_bytes(figure_to_png(_figure(grid, args.n, args.versions, repr(aug))))
    print(f"augmentation preview ({args.n} images x {args.versions} versions) written to {out}")
    return 0


def _list() -> int:
    from cnnlab.data.augment import AUGMENTATIONS

    hidden = {"norm_mean", "norm_std", "train_images"}
    for name in AUGMENTATIONS.names():
        params = AUGMENTATIONS.parameters(name)
        opts = ", ".join(f"{k}={p.default!r}" for k, p in params.items() if k not in hidden)
        print(f"{name:20s} {AUGMENTATIONS.describe(name)}")
        print(f"{'':20s} options: {opts or '(none)'}")
    return 0


def preview_grid(dataset: str, data_dir, pipeline: str, *, n: int, versions: int, seed: int):
    """uint8 images (n, 1 + versions, C, H, W): each row an original then its augmentations."""
    import torch

    from cnnlab.data.augment import build_augmentation, parse_pipeline
    from cnnlab.data.datasets import load_dataset
    from cnnlab.data.loader import Normalizer

    ds = load_dataset(dataset, data_dir)
    norm = Normalizer.fit(ds.train_images)
    aug = build_augmentation(
        parse_pipeline(pipeline), mean=norm.mean, std=norm.std, train_images=ds.train_images
    )
    pick = torch.randperm(len(ds.train_labels), generator=torch.Generator().manual_seed(seed))
    originals = ds.train_images[pick[:n]]
    x = norm(originals)
    mean = torch.tensor(norm.mean).view(1, -1, 1, 1)
    std = torch.tensor(norm.std).view(1, -1, 1, 1)
    columns = [originals]
    for v in range(versions):
        out = aug(x, torch.Generator().manual_seed(seed * 1_000_003 + v))
        columns.append((out * std + mean).clamp(0, 1).mul(255).round().to(torch.uint8))
    return torch.stack(columns, dim=1), ds, aug


def _figure(grid, n: int, versions: int, title: str):
    """A matplotlib figure: one row per image, column 0 the original."""
    from cnnlab.viz.examples import to_rgb
    from cnnlab.viz.png import new_figure

    cols = versions + 1
    fig = new_figure(1.0 * cols + 0.4, 1.0 * n + 0.8)
    rgb = to_rgb(grid.flatten(0, 1))  # (n*cols, C, H, W) -> (n*cols, H, W, 3)
    for i in range(n * cols):
        ax = fig.add_subplot(n, cols, i + 1)
        ax.imshow(rgb[i], interpolation="nearest")
        ax.set_axis_off()
        if i < cols:
            ax.set_title("original" if i == 0 else f"aug {i}", fontsize=8)
    fig.suptitle(title, fontsize=7, wrap=True)
    top = 1 - 0.75 / (n + 0.8)  # leave room for the title and the column headers
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=top, wspace=0.08, hspace=0.08)
    return fig
