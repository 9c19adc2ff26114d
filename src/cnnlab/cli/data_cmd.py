"""``cnnlab data fetch|info``."""

from __future__ import annotations

from cnnlab.cli.common import log


def register(sub) -> None:
    p = sub.add_parser("data", help="download or inspect data sets")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    f = dsub.add_parser("fetch", help="download a data set from its official mirrors (MD5-checked)")
    f.add_argument("name", help="fashion-mnist | mnist")
    f.add_argument("--dest", metavar="DIR", help="target directory (default: per-user cache)")
    f.set_defaults(func=cmd_fetch)
    i = dsub.add_parser("info", help="where a data set is found and what it holds")
    i.add_argument("name")
    i.add_argument("--data-dir", metavar="DIR")
    i.set_defaults(func=cmd_info)


def cmd_fetch(args) -> int:
    from cnnlab.data.download import fetch_dataset

    seen: set[str] = set()

    def progress(name: str, done: int, total: int | None) -> None:
        if name not in seen:
            seen.add(name)
            size = f" ({total / 1e6:.1f} MB)" if total else ""
            log(f"downloading {name}{size}")

    path = fetch_dataset(args.name, args.dest, progress=progress)
    print(f"{args.name}: ready in {path}")
    return 0


def cmd_info(args) -> int:
    import torch

    from cnnlab.data.datasets import load_dataset

    ds = load_dataset(args.name, args.data_dir)
    if ds.notice:
        log(f"note: {ds.notice}")
    counts = torch.bincount(ds.train_labels, minlength=ds.num_classes).tolist()
    print(f"{ds.name}: {ds.source}")
    print(f"  train {tuple(ds.train_images.shape)}  test {tuple(ds.test_images.shape)}")
    print(f"  classes: {', '.join(ds.classes)}")
    print(f"  train images per class: {counts}")
    return 0
