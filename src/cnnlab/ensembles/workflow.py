"""``cnnlab ensemble`` end to end: train (or reuse) every member, run each trained model once
over the validation and test splits, then score every group under every rule (handbook §13).

Members are trained with ``run_training`` into ``OUT/members/<name>/``; a finished run with the
same config is reused, an interrupted one resumed (as ``cnnlab compare`` does), and a run with a
different config is refused. Every member is evaluated with its OWN data pipeline (its
normalisation and preprocessing); the rows line up because all members share the data set and
validation split (checked when the config is loaded, and again on the targets here).

Costs: ``train_seconds`` sums the training-loop time of the distinct runs behind a group (a
snapshot ensemble costs one run); ``infer_seconds`` sums the members' forward passes over the
test set (times the number of views with TTA).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import torch
import yaml

from cnnlab.config import dump_config
from cnnlab.engine.checkpoint import atomic_write_text
from cnnlab.engine.rundir import RunDir, RunDirError
from cnnlab.ensembles.combine import EnsembleError, score
from cnnlab.ensembles.ensemble_report import write_ensemble_results
from cnnlab.ensembles.generate import EnsemblePlan, MemberPlan
from cnnlab.ensembles.loading import (
    build_eval_data,
    collect_log_probs,
    eval_runtime,
    load_run_member,
)
from cnnlab.ensembles.snapshots import SnapshotSaver, list_snapshots, load_snapshots
from cnnlab.ensembles.stacking import Stacker
from cnnlab.ensembles.weights import fit_weights, member_accuracies, weights_from_accuracy
from cnnlab.evaluation.tta import TTA, untaught_views
from cnnlab.reports.environment import environment_info
from cnnlab.training.spine import run_training

Log = Callable[[str], None]


@dataclass
class Unit:
    """One member's cached outputs: a trained run, or one snapshot of a run."""

    name: str
    run: str
    outputs: dict[tuple[str, bool], torch.Tensor]  # (split, tta) -> log-probs (N, C)
    seconds: dict[bool, float]  # tta -> forward seconds over the test set
    params: int


def member_dir(out: Path, member: MemberPlan) -> Path:
    return member.run if member.run is not None else out / "members" / member.name


def train_or_reuse(cfg, run_dir: Path, *, callbacks=(), log: Log = print,
                   stream: TextIO | None = None, prefix: str = "") -> dict[str, Any]:  # fmt: skip
    """Reuse a finished run with the same config, resume an interrupted one, else train."""
    rd = RunDir(run_dir)
    resume = False
    if rd.file(RunDir.CONFIG).is_file():
        if rd.file(RunDir.CONFIG).read_text(encoding="utf-8") != dump_config(cfg):
            raise RunDirError(f"{run_dir} holds a run with a different config; use another "
                              "--out (nothing was overwritten)")  # fmt: skip
        if rd.file(RunDir.METRICS).is_file():
            log(f"{prefix}already finished, reusing {run_dir}")
            return rd.read_json(RunDir.METRICS)
        resume = rd.checkpoint.is_file()
        if resume:
            log(f"{prefix}resuming the interrupted run in {run_dir}")
    return run_training(cfg, run_dir, resume=resume, log=log, stream=stream,
                        progress_prefix=prefix, callbacks=list(callbacks))  # fmt: skip


def train_members(plan: EnsemblePlan, out: Path, log: Log, stream) -> dict[str, dict[str, Any]]:
    """Train (or reuse) every member; its metrics by member name."""
    done = {}
    for k, m in enumerate(plan.members, 1):
        prefix = f"[{k}/{len(plan.members)}] {m.name}: "
        run_dir = member_dir(out, m)
        if m.run is not None:
            done[m.name] = RunDir(run_dir).read_json(RunDir.METRICS)
            continue
        log(f"{prefix}training {m.config.model.name} ({m.config.train.epochs} epochs)")
        done[m.name] = train_member(m, out, log=log, stream=stream, prefix=prefix)
    return done


def train_member(m: MemberPlan, out: Path, *, log: Log = print, stream: TextIO | None = None,
                 prefix: str = "") -> dict[str, Any]:  # fmt: skip
    """Train (or reuse, or resume) one generated member, saving its snapshots if it has them;
    also the unit of work of a parallel study (benchmarks/ensembles/run_study.py --jobs)."""
    run_dir = member_dir(out, m)
    cbs = []
    if m.snapshots:
        cbs = [SnapshotSaver.from_config(m.config, run_dir, per_epoch=m.per_epoch)]
    metrics = train_or_reuse(m.config, run_dir, callbacks=cbs, log=log, stream=stream,
                             prefix=prefix)  # fmt: skip
    if m.snapshots and len(list_snapshots(run_dir)) < m.snapshots:
        raise EnsembleError(f"{run_dir}: holds {len(list_snapshots(run_dir))} snapshots, "
                            f"{m.snapshots} wanted; delete it to train again")  # fmt: skip
    return metrics


def collect_units(plan: EnsemblePlan, out: Path, log: Log):
    """Run every member (every kept snapshot) over val and test (and with TTA); targets."""
    bundles: dict[str, Any] = {}
    units: list[Unit] = []
    targets: dict[str, torch.Tensor] = {}
    for m in plan.members:
        run_dir = member_dir(out, m)
        if m.snapshots:
            models, names, _ = load_snapshots(run_dir, last=m.snapshots)
            named = [(f"{m.name}/{n}", model) for n, model in zip(names, models, strict=True)]
        else:
            named = [(m.name, load_run_member(run_dir)[0])]
        rt = eval_runtime(m.config, named[0][1])  # evaluate as the member trained
        data_spec = yaml.safe_dump(m.config.to_dict()["data"], sort_keys=True)
        key = f"{data_spec}{rt.device}{rt.channels_last}"
        if key not in bundles:
            bundles[key] = build_eval_data(m.config, device=rt.device,
                                           channels_last=rt.channels_last)  # fmt: skip
        data = bundles[key]
        for name, model in named:
            units.append(_run_unit(name, m.name, rt.prepare_model(model), data, plan, targets))
            log(f"{name}: test acc {_acc(units[-1], 'test', False, targets):.4f}")
    return units, targets


def tta_warnings(plan: EnsemblePlan) -> list[str]:
    """One line per member whose training augmentation lacks a TTA view's transformation."""
    if not plan.combine.tta:
        return []
    lines = []
    for m in plan.members:
        missing = untaught_views(plan.combine.tta, m.config.data.augment)
        if missing:
            lines.append(
                f"member {m.name!r} trained without {' or '.join(missing)} augmentation, but "
                f"the TTA views apply {', '.join(missing)}: it sees test images unlike its "
                "training images and TTA will likely lower its accuracy (handbook §13.1.1 "
                "takes the views from the training augmentation)"
            )
    return lines


def _run_unit(name: str, run: str, model, data, plan: EnsemblePlan, targets) -> Unit:
    views = plan.combine.tta
    mean, std = data.normalizer.mean, data.normalizer.std
    variants = [(False, model)] + ([(True, TTA(model, views, mean=mean, std=std))] if views else [])
    outputs, seconds = {}, {}
    for tta, net in variants:
        for split in ("val", "test"):
            loader = getattr(data, split)
            if loader is None:
                continue
            logp, y, secs = collect_log_probs(net, loader)
            _check_targets(targets, split, y, name)
            outputs[(split, tta)] = logp
            if split == "test":
                seconds[tta] = secs
    params = sum(p.numel() for p in model.parameters())
    return Unit(name, run, outputs, seconds, params)


def _check_targets(
    targets: dict[str, torch.Tensor], split: str, y: torch.Tensor, name: str
) -> None:
    if split not in targets:
        targets[split] = y
    elif not torch.equal(targets[split], y):
        raise EnsembleError(f"member {name!r}: its {split} rows differ from the first member's "
                            "(members must share the data set and validation split)")  # fmt: skip


def _acc(unit: Unit, split: str, tta: bool, targets) -> float:
    return (unit.outputs[(split, tta)].argmax(1) == targets[split]).double().mean().item()


def rule_row(rule: str, logp_val, y_val, logp_test, y_test, stacking: dict) -> dict[str, Any]:
    """Score one rule on stacked member outputs ``(M, N, C)``; weights/meta-models see val only."""
    extra: dict[str, Any] = {}
    if rule in ("mean", "plurality", "majority"):
        s = score(logp_test, y_test, rule)
    elif rule in ("weighted_acc", "weighted_nll"):
        if rule == "weighted_acc":
            w = weights_from_accuracy(member_accuracies(logp_val, y_val))
        else:
            w = fit_weights(logp_val, y_val)
        s = score(logp_test, y_test, "weighted", w)
        extra["weights"] = [round(v, 6) for v in w.tolist()]
    else:
        st = Stacker(**stacking).fit(logp_val, y_val)
        s = score(st.predict_log_proba(logp_test)[None], y_test, "mean")
        extra.update(st.oof_scores(y_val))
    return {"rule": rule, **{f"test_{k}": v for k, v in s.to_dict().items()}, **extra}


def combine_groups(plan: EnsemblePlan, units: list[Unit], targets, metrics) -> list[dict]:
    rows = []
    for group, names in plan.groups.items():
        chosen = [u for u in units if u.run in names]
        runs = sorted({u.run for u in chosen})
        train_s = sum(float(metrics[r].get("train_seconds") or 0.0) for r in runs)
        for tta in (False, True) if plan.combine.tta else (False,):
            splits = ["test", "val"] if "val" in targets else ["test"]
            stack = {s: torch.stack([u.outputs[(s, tta)] for u in chosen]) for s in splits}
            for rule in plan.combine.rules:
                row = rule_row(rule, stack.get("val"), targets.get("val"), stack["test"],
                               targets["test"], plan.combine.stacking)  # fmt: skip
                rows.append({"group": group, "tta": tta, "members": [u.name for u in chosen],
                             **row, "train_seconds": train_s,
                             "infer_seconds": sum(u.seconds[tta] for u in chosen),
                             "params": sum(u.params for u in chosen)})  # fmt: skip
    return rows


def run_ensemble(plan: EnsemblePlan, out: str | Path, *, command: str = "", log: Log = print,
                 stream: TextIO | None = None) -> dict[str, Any]:  # fmt: skip
    """Generate and combine (see module docstring); writes ``results.{json,md}`` into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start, started = time.perf_counter(), time.strftime("%Y-%m-%dT%H:%M:%S")
    atomic_write_text(out / "ensemble.yaml", yaml.safe_dump(plan.source, sort_keys=False))
    metrics = train_members(plan, out, log, stream)
    warnings = tta_warnings(plan)
    for warning in warnings:
        log(f"warning: {warning}")
    units, targets = collect_units(plan, out, log)
    members = [_member_row(u, targets, metrics, out, plan) for u in units]
    rows = combine_groups(plan, units, targets, metrics)
    first = metrics[plan.members[0].name]
    results = {
        "name": plan.name, "description": plan.description, "command": command,
        "dataset": first.get("dataset"), "data_source": first.get("data_source"),
        "num_val": int(targets["val"].numel()) if "val" in targets else 0,
        "num_test": int(targets["test"].numel()),
        "tta_views": [repr(v) if callable(v) else v for v in plan.combine.tta or ()],
        "groups": plan.groups, "members": members, "rows": rows, "warnings": warnings,
        "total_train_seconds": sum(float(m.get("train_seconds") or 0) for m in metrics.values()),
        "env": environment_info(), "started": started,
        "wall_seconds": time.perf_counter() - start,
    }  # fmt: skip
    write_ensemble_results(out, results)
    return results


def _member_row(u: Unit, targets, metrics, out: Path, plan: EnsemblePlan) -> dict[str, Any]:
    member = next(m for m in plan.members if m.name == u.run)
    row = {"name": u.name, "run_dir": str(member_dir(out, member)),
           "test_acc": _acc(u, "test", False, targets),
           "test_nll": _nll(u.outputs[("test", False)], targets["test"]),
           "val_acc": _acc(u, "val", False, targets) if "val" in targets else None,
           "train_seconds": metrics[u.run].get("train_seconds"),
           "infer_seconds": u.seconds[False], "params": u.params}  # fmt: skip
    if plan.combine.tta:
        row["tta_test_acc"] = _acc(u, "test", True, targets)
        row["tta_infer_seconds"] = u.seconds[True]
    return row


def _nll(logp: torch.Tensor, y: torch.Tensor) -> float:
    return -logp.gather(1, y.view(-1, 1)).double().mean().item()
