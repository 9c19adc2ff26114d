"""``cnnlab ensemble`` configs: which members to train and how to combine them (handbook §13.2.2).

The YAML schema (every key optional unless marked)::

    name: seeds-demo
    description: free text
    base_config: configs/case-study/cnn2.yaml   # a recipe file under `base`
    base:                         # a run config (as for `cnnlab train`) shared by all members
      data: {val_split: 0.1}      # a validation split: needed by weighted_* and stacking
      train: {epochs: 10}
    members:                      # REQUIRED: one entry per member (or family of members)
      - name: cnn2                # REQUIRED, unique; the run goes to OUT/members/<name>/
        seeds: [0, 1, 2]          # one member per seed: cnn2-s0, cnn2-s1, cnn2-s2
      - name: hinge
        loss: {name: multiclass_hinge}    # any run-config section overrides `base`
      - name: lenet
        config: configs/case-study/lenet5.yaml   # a recipe file over `base`, under this entry
      - name: snap                # snapshot ensemble: one run, its last 3 cycle snapshots
        schedule: {name: cosine_restarts, params: {cycles: 5}}
        optim: {name: sgd, lr: 0.1, params: {momentum: 0.9}}
        snapshots: {last: 3}      # or just `snapshots: 3`
      - name: epochs              # "epoch fusion": one ordinary run, its last 3 epochs
        snapshots: {last: 3, per_epoch: true}
      - name: old
        run: runs/earlier-run     # an existing finished run directory (not trained again)
    groups:                       # named ensembles over entry (or expanded) names;
      seeds: [cnn2]               # default: one group `all` with every member
      mixed: [cnn2-s0, hinge, lenet]
    combine:
      rules: [mean, weighted_acc, weighted_nll, plurality, majority, stacking]
      stacking: {meta: logistic, folds: 5, features: logprobs, l2: 0.001}
      tta: {views: flip_shift, shift: 2}  # or false (default), true (= flip), a preset name,
                                          # or views: [identity, hflip, {name: shift, dy: 1}]

Merge order of a member's run config: ``base_config`` < ``base`` < the entry's ``config`` file <
the entry's own sections < command-line overrides (``--set``, ``--epochs``, ``--data-dir``).
Relative paths are looked up next to the YAML file first, then in the working directory.
A ``run:`` member is used as it is (its own config.yaml; of the overrides only ``--data-dir``).
All members must share the data set, its options and the validation split (``dataset``,
``params``, ``val_split``, ``split_seed``): weights and stacking need the same held-out rows,
and the rules combine the same test rows.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnlab.config import (
    ConfigError,
    RunConfig,
    build_config,
    load_config,
    merge_trees,
    read_yaml,
)
from cnnlab.ensembles.combine import EnsembleError
from cnnlab.ensembles.stacking import Stacker
from cnnlab.evaluation.tta import make_view, preset_views
from cnnlab.registry import SCHEDULES

RULE_NAMES = ("mean", "weighted_acc", "weighted_nll", "plurality", "majority", "stacking")
NEEDS_VAL = ("weighted_acc", "weighted_nll", "stacking")
TOP_KEYS = ("name", "description", "base_config", "base", "members", "groups", "combine")
ENTRY_KEYS = ("name", "seeds", "snapshots", "config", "run")
RUN_SECTIONS = tuple(f for f in RunConfig.__dataclass_fields__ if f != "name")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
SHARED_DATA = ("dataset", "params", "val_split", "split_seed")


@dataclass(frozen=True)
class MemberPlan:
    """One training run (or an existing one); ``snapshots`` keeps its last m cycle snapshots."""

    name: str
    entry: str
    config: RunConfig
    run: Path | None = None
    snapshots: int | None = None
    per_epoch: bool = False  # snapshots at every epoch end (epoch fusion), any schedule


@dataclass(frozen=True)
class CombineSpec:
    rules: tuple[str, ...] = ("mean",)
    stacking: dict[str, Any] = field(default_factory=dict)
    tta: tuple[Any, ...] | None = None  # view specs, None = no TTA


@dataclass(frozen=True)
class EnsemblePlan:
    name: str
    description: str
    members: list[MemberPlan]
    groups: dict[str, list[str]]
    combine: CombineSpec
    source: dict[str, Any]

    @property
    def has_val(self) -> bool:
        return self.members[0].config.data.val_split > 0


def _fail(where: str, message: str) -> ConfigError:
    return ConfigError(f"{where}: {message}")


def _unknown(keys: Sequence[str], valid: Sequence[str], where: str) -> None:
    bad = [k for k in keys if k not in valid]
    if bad:
        raise _fail(where, f"unknown key {bad[0]!r}; valid keys: {', '.join(valid)}")


def _resolve(path: str, here: Path | None, where: str) -> Path:
    candidates = ([here / path] if here is not None else []) + [Path(path)]
    for c in candidates:
        if c.exists():
            return c
    raise _fail(where, f"{path} not found (looked in {', '.join(str(c) for c in candidates)})")


def load_plan(
    path: str | Path,
    *,
    overrides: Sequence[str] = (),
    epochs: int | None = None,
    data_dir: str | None = None,
) -> EnsemblePlan:
    """Read and validate an ensemble YAML (see module docstring) before anything is trained."""
    path = Path(path)
    tree = read_yaml(path)
    try:
        return build_plan(tree, here=path.parent, overrides=overrides, epochs=epochs,
                          data_dir=data_dir)  # fmt: skip
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def build_plan(
    tree: Mapping[str, Any],
    *,
    here: Path | None = None,
    overrides: Sequence[str] = (),
    epochs: int | None = None,
    data_dir: str | None = None,
) -> EnsemblePlan:
    """The plan of a parsed ensemble config (a mapping with the schema above)."""
    _unknown(list(tree), TOP_KEYS, "top level")
    base: dict[str, Any] = {}
    if tree.get("base_config"):
        base = read_yaml(_resolve(str(tree["base_config"]), here, "base_config"))
    base = merge_trees(base, _mapping(tree.get("base"), "base"))
    extra = [*overrides]
    extra += [f"train.epochs={epochs}"] if epochs is not None else []
    extra += [f"data.data_dir={data_dir}"] if data_dir is not None else []
    entries = tree.get("members")
    if not isinstance(entries, list) or not entries:
        raise _fail("members", "expected a non-empty list of member entries")
    members: list[MemberPlan] = []
    for i, entry in enumerate(entries):
        members += _entry_members(entry, i, base, here, extra, data_dir)
    _check_unique(members)
    _check_shared_data(members)
    combine = _combine_spec(_mapping(tree.get("combine"), "combine"))
    if not members[0].config.data.val_split > 0 and set(combine.rules) & set(NEEDS_VAL):
        need = ", ".join(r for r in combine.rules if r in NEEDS_VAL)
        raise _fail("combine.rules", f"{need} need(s) a validation split: set base.data.val_split "
                    "(e.g. 0.1); fitting on the test set would leak it")  # fmt: skip
    groups = _groups(tree.get("groups"), members)
    name = str(tree.get("name") or "ensemble")
    return EnsemblePlan(name, str(tree.get("description") or ""), members, groups, combine,
                        dict(tree))  # fmt: skip


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _fail(where, f"expected a mapping, found {value!r}")
    return dict(value)


def _entry_members(entry: Any, i: int, base: dict[str, Any], here: Path | None,
                   extra: list[str], data_dir: str | None) -> list[MemberPlan]:  # fmt: skip
    where = f"members[{i}]"
    entry = _mapping(entry, where)
    _unknown(list(entry), (*ENTRY_KEYS, *RUN_SECTIONS), where)
    name = entry.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise _fail(f"{where}.name", f"expected a name of letters, digits, _ . -, found {name!r}")
    where = f"members[{i}] ({name})"
    if entry.get("run") is not None:
        return [_existing_run(entry, name, here, where, data_dir)]
    tree = base
    if entry.get("config"):
        tree = merge_trees(tree, read_yaml(_resolve(str(entry["config"]), here, where)))
    tree = merge_trees(tree, {k: v for k, v in entry.items() if k in RUN_SECTIONS})
    tree["name"] = name
    snapshots, per_epoch = _snapshots(entry.get("snapshots"), where)
    seeds = entry.get("seeds")
    if seeds is not None and (not isinstance(seeds, list) or not seeds
                              or not all(isinstance(s, int) for s in seeds)):  # fmt: skip
        raise _fail(f"{where}.seeds", f"expected a non-empty list of integers, found {seeds!r}")
    out = []
    for seed in seeds or [None]:
        sub = dict(tree, seed=seed) if seed is not None else tree
        label = f"{name}-s{seed}" if seed is not None else name
        try:
            cfg = build_config(sub, extra)
        except ConfigError as err:
            raise _fail(where, str(err)) from None
        if snapshots is not None:
            _check_snapshot_schedule(cfg, snapshots, per_epoch, where)
        plan = MemberPlan(label, name, cfg.replace(name=label), None, snapshots, per_epoch)
        out.append(plan)
    return out


def _existing_run(entry: dict[str, Any], name: str, here: Path | None, where: str,
                  data_dir: str | None) -> MemberPlan:  # fmt: skip
    others = [k for k in entry if k not in ("name", "run")]
    if others:
        raise _fail(where, f"a `run:` member takes no other keys, found {', '.join(others)}")
    run = _resolve(str(entry["run"]), here, f"{where}.run")
    if not (run / "metrics.json").is_file():
        raise _fail(f"{where}.run", f"{run} holds no finished run (no metrics.json)")
    cfg = load_config(run / "config.yaml", [f"data.data_dir={data_dir}"] if data_dir else [])
    return MemberPlan(name, name, cfg, run, None)


def _snapshots(value: Any, where: str) -> tuple[int | None, bool]:
    if value is None:
        return None, False
    last = value.get("last") if isinstance(value, Mapping) else value
    per_epoch = value.get("per_epoch", False) if isinstance(value, Mapping) else False
    if isinstance(value, Mapping):
        _unknown(list(value), ("last", "per_epoch"), f"{where}.snapshots")
    if not isinstance(last, int) or isinstance(last, bool) or last < 1:
        raise _fail(
            f"{where}.snapshots", f"expected an integer >= 1 or {{last: m}}, found {value!r}"
        )
    if not isinstance(per_epoch, bool):
        raise _fail(f"{where}.snapshots.per_epoch", f"expected true or false, found {per_epoch!r}")
    return last, per_epoch


def _check_snapshot_schedule(cfg: RunConfig, last: int, per_epoch: bool, where: str) -> None:
    if per_epoch:
        if last > cfg.train.epochs:
            raise _fail(
                f"{where}.snapshots", f"last={last} exceeds train.epochs={cfg.train.epochs}"
            )
        return
    if cfg.schedule.name != "cosine_restarts":
        raise _fail(f"{where}.snapshots", "needs schedule.name: cosine_restarts (eq. 13.1), "
                    f"found {cfg.schedule.name!r}")  # fmt: skip
    cycles = cfg.schedule.params.get(
        "cycles", SCHEDULES.parameters("cosine_restarts")["cycles"].default
    )
    if last > cycles:
        raise _fail(f"{where}.snapshots", f"last={last} exceeds schedule cycles={cycles}")


def _check_unique(members: list[MemberPlan]) -> None:
    seen: set[str] = set()
    for m in members:
        if m.name in seen:
            raise _fail("members", f"duplicate member name {m.name!r}")
        seen.add(m.name)


def _check_shared_data(members: list[MemberPlan]) -> None:
    first = members[0]
    for m in members[1:]:
        for key in SHARED_DATA:
            a, b = getattr(first.config.data, key), getattr(m.config.data, key)
            differ = dict(a) != dict(b) if isinstance(a, Mapping) else a != b
            if differ:
                raise _fail(
                    f"member {m.name!r}",
                    f"data.{key} is {b!r} but {first.name!r} has {a!r}; members must share "
                    "the data set and validation split",
                )


def _combine_spec(tree: dict[str, Any]) -> CombineSpec:
    _unknown(list(tree), ("rules", "stacking", "tta"), "combine")
    rules = tree.get("rules", ["mean"])
    if isinstance(rules, str):
        rules = [rules]
    if not isinstance(rules, list) or not rules or any(r not in RULE_NAMES for r in rules):
        raise _fail(
            "combine.rules", f"expected a list from {', '.join(RULE_NAMES)}, found {rules!r}"
        )
    stacking = _mapping(tree.get("stacking"), "combine.stacking")
    try:
        Stacker(**stacking)
    except (TypeError, EnsembleError) as err:
        raise _fail("combine.stacking", str(err)) from None
    return CombineSpec(tuple(dict.fromkeys(rules)), stacking, _tta_views(tree.get("tta")))


def _tta_views(value: Any) -> tuple[Any, ...] | None:
    if value is None or value is False:
        return None
    spec = {"views": "flip"} if value is True else value
    spec = {"views": spec} if isinstance(spec, (str, list)) else _mapping(spec, "combine.tta")
    _unknown(list(spec), ("views", "shift"), "combine.tta")
    views, shift = spec.get("views", "flip"), spec.get("shift", 2)
    try:
        specs = preset_views(views, int(shift)) if isinstance(views, str) else list(views)
        for v in specs:
            make_view(v)  # a bad view fails here, before any training
    except (EnsembleError, TypeError, ValueError) as err:
        raise _fail("combine.tta", str(err)) from None
    if not specs:
        raise _fail("combine.tta.views", "expected at least one view")
    return tuple(specs)


def _groups(value: Any, members: list[MemberPlan]) -> dict[str, list[str]]:
    if value is None:
        return {"all": [m.name for m in members]}
    tree = _mapping(value, "groups")
    valid = sorted({m.name for m in members} | {m.entry for m in members})
    groups = {}
    for gname, items in tree.items():
        if not isinstance(items, list) or not items:
            raise _fail(
                f"groups.{gname}", f"expected a non-empty list of member names, found {items!r}"
            )
        names: list[str] = []
        for item in items:
            hits = [m.name for m in members if item in (m.name, m.entry)]
            if not hits:
                raise _fail(
                    f"groups.{gname}", f"unknown member {item!r}; valid: {', '.join(valid)}"
                )
            names += [h for h in hits if h not in names]
        groups[str(gname)] = names
    return groups
