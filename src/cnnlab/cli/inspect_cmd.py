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
    "mix": "mix",
}
# The config key (``--set`` form) that selects an entry of each kind; compression steps are
# chosen in the ``cnnlab compress --config`` file.
SELECTED_BY = {
    "models": "model.name={}",
    "datasets": "data.dataset={}",
    "losses": "loss.name={}",
    "optimizers": "optim.name={}",
    "schedules": "schedule.name={}",
    "activations": "model.params.activation={}",
    "initializers": "model.init={}",
    "augmentations": "data.augment=[{}]",
    "samplers": "data.sampler={}",
    "preprocessing": "data.preprocess=[{}]",
    "compression": "compress steps: [{{name: {}}}]",
    "mix": "loss.mix={{name: {}}}",
}
# Selectable practices that are options rather than registry entries, listed with their kind.
EXTRA = {
    "schedules": [
        ("warmup", "schedule.warmup_epochs=N", "Linear learning-rate warm-up over the first N "
         "epochs, before any schedule (Goyal et al. 2017); fractions of an epoch allowed."),
    ],
}  # fmt: skip


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
    p = sub.add_parser(
        "list", help="list selectable components, one per line, with the config key to set",
        description="Every selectable component of a kind (all kinds without KIND), each with "
        "the config key that selects it (--set KEY=VALUE or the YAML recipe) and its summary.",
    )  # fmt: skip
    p.add_argument("kind", nargs="?", choices=sorted(LISTABLE), help="what to list (default all)")
    p.set_defaults(func=cmd_list)


def all_registries() -> dict:
    """Every registry ``cnnlab list`` can show, including those of the data and nn modules."""
    # Imported here, not at the top, so that `cnnlab --help` stays fast (the CLI imports
    # lazily, always downward).
    from cnnlab.components import REGISTRIES
    from cnnlab.compression import COMPRESSION
    from cnnlab.data.augment import AUGMENTATIONS
    from cnnlab.data.preprocess import PREPROCESSORS
    from cnnlab.data.samplers import SAMPLERS
    from cnnlab.nn.activations import ACTIVATIONS
    from cnnlab.nn.init import INITS

    return {
        **REGISTRIES,
        "activation": ACTIVATIONS,
        "initializer": INITS,
        "augmentation": AUGMENTATIONS,
        "sampler": SAMPLERS,
        "preprocessing": PREPROCESSORS,
        "compression": COMPRESSION,
        "mix": _mix_registry(),
    }


def _mix_registry():
    """Mixup and CutMix (``loss.mix``) as a registry, so they list like the rest."""
    from cnnlab.engine.mix_tasks import MIX_TASKS
    from cnnlab.registry import Registry

    registry = Registry("mix")
    for name, task in MIX_TASKS.items():
        registry.register(name)(task)
    return registry


def _listing(kind: str, registry) -> list[tuple[str, str, str]]:
    rows = [(n, SELECTED_BY[kind].format(n), registry.describe(n)) for n in registry.names()]
    return rows + EXTRA.get(kind, [])


def cmd_list(args) -> int:
    registries = all_registries()
    kinds = [args.kind] if args.kind else list(LISTABLE)
    for i, kind in enumerate(kinds):
        rows = _listing(kind, registries[LISTABLE[kind]])
        if not args.kind:  # everything: a heading per kind, a blank line between kinds
            print(("\n" if i else "") + f"{kind}:")
        width = max(len(r[0]) for r in rows)
        key_width = max(len(r[1]) for r in rows)
        for name, key, text in rows:
            print(f"{name:<{width}}  {key:<{key_width}}  {text}".rstrip())
    return 0
