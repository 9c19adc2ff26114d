"""``cnnlab inspect RUN [ACTION]``: look inside a trained network, writing PNG figures.

Actions (Handbook §3.1.2-3.1.3): ``--layers`` (or no action) lists the layers; ``filters``,
``features``, ``top-k``, ``sparsity``, ``cam`` and ``distributed`` each write PNGs into ``--out``
(default ``RUN_DIR/figures/inside/``) and print their paths.
"""

from __future__ import annotations

from pathlib import Path

from cnnlab.cli.common import log, print_json
from cnnlab.cli.errors import UsageError

ACTIONS = ("filters", "features", "top-k", "sparsity", "cam", "distributed")


def register(sub) -> None:
    p = sub.add_parser(
        "inspect",
        help="look inside a trained run: layers, filters, feature maps, top-k, sparsity, CAM",
        description="Figures of what a trained network computes (written as PNG files).",
    )
    p.add_argument("run", metavar="RUN_DIR_OR_CHECKPOINT", help="run directory or checkpoint")
    p.add_argument("action", nargs="?", choices=ACTIONS, help="what to draw (default: --layers)")
    p.add_argument("--layers", action="store_true", help="list the inspectable layers")
    p.add_argument("--layer", metavar="NAME", help="layer name (see --layers)")
    p.add_argument("--index", type=int, default=0, help="image index in the split (default 0)")
    p.add_argument("--channel", type=int, help="channel of --layer (top-k)")
    p.add_argument("--k", type=int, default=9, help="how many images for top-k (default 9)")
    p.add_argument("--method", choices=("cam", "gradcam"), default="gradcam", help="cam method")
    p.add_argument("--split", choices=("test", "train"), default="test", help="data split")
    p.add_argument("--max-images", type=int, metavar="N", help="use at most N images of the split")
    p.add_argument("--eps", type=float, default=0.0, help="sparsity: count |a| <= eps as zero")
    p.add_argument("--seed", type=int, default=0, help="distributed: channel choice seed")
    p.add_argument("--out", metavar="DIR", help="output directory (default RUN/figures/inside)")
    p.add_argument("--data-dir", metavar="DIR", help="directory holding the data set files")
    p.add_argument("--json", action="store_true", help="print one JSON object at the end")
    p.set_defaults(func=cmd_inspect)


def cmd_inspect(args) -> int:
    from cnnlab.inspect.run_figures import load_run

    if args.action is None and not args.layers:
        args.layers = True
    if args.layers and args.action is not None:
        raise UsageError(f"give either --layers or an action, not both ({args.action!r})")
    try:
        run = load_run(args.run, data_dir=args.data_dir)
        if run.notice:
            log(f"note: {run.notice}")
        result = _list(run) if args.layers else _draw(run, args)
    except ValueError as err:  # the inspect tools' clear messages, e.g. an unknown layer
        raise UsageError(str(err)) from err
    if args.json:
        print_json(result)
    return 0


def _list(run) -> dict:
    from cnnlab.inspect.layers import list_layers

    entries = list_layers(run.model, run.input_size)
    width = max(len(e.name) for e in entries)
    kinds = max(len(e.type) for e in entries)
    print(f"{run.meta['model']['name']} on {'x'.join(map(str, run.input_size))}")
    for e in entries:
        shape = "x".join(map(str, e.output_shape))
        print(f"{e.name:<{width}}  {e.type:<{kinds}}  {shape}")
    return {"layers": [e.to_dict() for e in entries]}


def _need(value, flag: str, action: str):
    if value is None:
        raise UsageError(f"inspect {action} needs {flag}")
    return value


def _draw(run, args) -> dict:
    from cnnlab.inspect import run_figures as inside

    out_dir = Path(args.out) if args.out else run.run_dir / "figures" / "inside"
    pngs: dict[str, bytes] = {}
    info: dict = {}
    action, split = args.action, args.split
    if action == "filters":
        pngs["filters.png"] = inside.filters_figure(run)
    elif action == "features":
        layer = _need(args.layer, "--layer NAME", action)
        png = inside.features_figure(run, layer, args.index, split)
        pngs[f"features_{layer}_{split}{args.index}.png"] = png
    elif action == "top-k":
        layer, channel = _need(args.layer, "--layer NAME", action), args.channel
        _need(channel, "--channel C", action)
        png, top = inside.top_k_figure(
            run, layer, channel, k=args.k, split=split, max_images=args.max_images
        )
        pngs[f"topk_{layer}_c{channel}.png"] = png
        info = {"indices": top.indices.tolist(), "values": top.values.tolist()}
    elif action == "sparsity":
        png, rows = inside.sparsity_figure(
            run, split=split, max_images=args.max_images or 256, eps=args.eps
        )
        pngs["sparsity.png"] = png
        info = {"layers": [r.to_dict() for r in rows]}
    elif action == "cam":
        png, res = inside.cam_figure(
            run, [args.index], method=args.method, layer=args.layer, split=split
        )
        pngs[f"{args.method}_{split}{args.index}.png"] = png
        info = {"layer": res.layer, "target": int(res.targets[0]), "score": float(res.scores[0])}
    else:  # distributed
        layer = _need(args.layer, "--layer NAME", action)
        overlay, matrix, view = inside.distributed_figures(
            run, layer, n_images=args.max_images or 4, seed=args.seed, split=split
        )
        pngs[f"distributed_{layer}.png"] = overlay
        pngs[f"distributed_{layer}_matrix.png"] = matrix
        info = {"channels": view.channels, "fires": view.fires.int().tolist()}
    return {"files": _write(out_dir, pngs), **info}


def _write(out_dir: Path, pngs: dict[str, bytes]) -> list[str]:
    from cnnlab.engine.checkpoint import atomic_write_bytes

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in pngs.items():
        path = out_dir / name.replace("/", "_")
        atomic_write_bytes(path, data)
        print(path)
        paths.append(str(path))
    return paths
