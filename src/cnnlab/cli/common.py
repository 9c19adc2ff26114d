"""Helpers shared by the sub-commands: config assembly and output conventions."""

from __future__ import annotations

import json
import sys
from typing import Any

from cnnlab.config import RunConfig, load_config


def add_set_arg(p, help_text: str = "override one config value (repeatable)") -> None:
    """``--set section.key=value``, repeatable, collected in ``args.overrides``."""
    p.add_argument(
        "--set", dest="overrides", metavar="SECTION.KEY=VALUE", action="append", default=[],
        help=f"{help_text}, e.g. --set optim.lr=0.01",
    )  # fmt: skip


def add_config_args(p) -> None:
    """``--config FILE``, ``--set`` and ``--data-dir``: the config flags of train-like commands."""
    p.add_argument("--config", metavar="FILE", help="YAML recipe (defaults < file < flags)")
    add_set_arg(p)
    p.add_argument("--data-dir", metavar="DIR", help="directory holding the data set files")


def config_from_args(args, extra: list[str]) -> RunConfig:
    """Recipe file + shortcut flags (turned into overrides) + ``--set`` (last wins)."""
    return load_config(args.config, [*extra, *args.overrides])


def shortcut_overrides(args, mapping: dict[str, str]) -> list[str]:
    """``--epochs 3`` -> ``train.epochs=3`` etc., for flags that were given."""
    out = []
    for attr, key in mapping.items():
        value = getattr(args, attr, None)
        if value is not None:
            out.append(f"{key}={value}")
    return out


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def print_json(data: Any) -> None:
    """One JSON object on the last line of stdout (for scripts)."""
    from cnnlab.engine.rundir import clean_json

    print(json.dumps(clean_json(data)), flush=True)
