"""``cnnlab summary`` and ``cnnlab list``."""

from __future__ import annotations

import re

from cnnlab.cli.common import print_json
from cnnlab.cli.errors import UsageError

LISTABLE = {
    "models": "model",
    "datasets": "dataset",
    "losses": "loss",
    "optimizers": "optimizer",
    "schedules": "schedule",
    "activations": "activation",
    "initializers": "initializer",
    "augmentations": "augmentation",
    "samplers": "sampler",
    "preprocessing": "preprocessing",
    "compression": "compression",
}


def parse_input(text: str) -> tuple[int, int, int]:
    """``"1x28x28"`` -> (1, 28, 28)."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX,]\s*(\d+)\s*[xX,]\s*(\d+)\s*", text)
    if not m:
        raise UsageError(f"--input {text!r}: expected CxHxW, e.g. 1x28x28 or 3x224x224")
    c, h, w = (int(g) for g in m.groups())
    if min(c, h, w) < 1:
        raise UsageError(f"--input {text!r}: sizes must be >= 1")
    return c, h, w


def register_summary(sub) -> None:
    p = sub.add_parser("summary", help="per-layer shapes, parameters, MACs, receptive fields")
    p.add_argument("model", help="model name (cnnlab list models)")
    p.add_argument(
        "--input", default="1x28x28", metavar="CxHxW", help="input size (default 1x28x28)"
    )
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument(
        "--option",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="model option, e.g. --option dropout=0.3 (repeatable)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_summary)


def cmd_summary(args) -> int:
    from cnnlab.config import parse_override
    from cnnlab.inspect.summary import summary
    from cnnlab.models import create_model

    c, h, w = parse_input(args.input)
    if h != w:
        raise UsageError(f"--input {args.input}: cnnlab models take square images")
    options = dict(parse_override(o) for o in args.option)
    model = create_model(
        args.model, num_classes=args.num_classes, in_chans=c, input_size=h, **options
    )
    info = summary(model, (c, h, w))
    if args.json:
        print_json(info.to_dict())
    else:
        print(f"{args.model} on {c}x{h}x{w}, {args.num_classes} classes")
        print(info.format_table())
    return 0


def register_list(sub) -> None:
    p = sub.add_parser("list", help="list registered components, one per line")
    p.add_argument("kind", choices=sorted(LISTABLE), help="what to list")
    p.set_defaults(func=cmd_list)


def cmd_list(args) -> int:
    from cnnlab.components import all_registries

    registry = all_registries()[LISTABLE[args.kind]]
    width = max(len(n) for n in registry.names())
    for name in registry.names():
        print(f"{name:<{width}}  {registry.describe(name)}".rstrip())
    return 0
