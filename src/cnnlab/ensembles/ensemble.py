"""``Ensemble``: several trained classifiers combined into one ``nn.Module`` (handbook §13.2).

``forward(x)`` returns the LOG-PROBABILITIES ``log q`` of the combined distribution (N, C), not
logits. Because ``q`` sums to 1, ``log_softmax(log q) == log q``, so ``evaluate()`` (which
applies cross-entropy, i.e. ``log_softmax``, to the model output) reports the ensemble's own
negative log-likelihood as its loss, its argmax as the prediction, and ``softmax`` of the output
gives ``q`` back: evaluation, predictions and reports take an ensemble unchanged.

Majority voting can abstain, which a (N, C) output cannot express: in ``majority`` mode
``forward`` returns the voting distribution (whose argmax is the plurality answer), and
``predict``/``votes`` (and ``cnnlab ensemble``'s results) give the abstentions, scored as errors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnlab.ensembles.combine import (
    ABSTAIN,
    EnsembleError,
    check_rule,
    check_weights,
    combine,
    majority,
    plurality,
    predict,
    vote_counts,
)
from cnnlab.ensembles.loading import load_run_member
from cnnlab.ensembles.snapshots import load_snapshots
from cnnlab.ensembles.weights import fit_weights, member_accuracies, weights_from_accuracy


class InputAdapter(nn.Module):
    """Per-channel ``x * scale + shift``: re-normalise the ensemble's input for one member whose
    training split had other mean/std statistics (handbook §6: each model sees its own)."""

    def __init__(self, scale: Sequence[float], shift: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("shift", torch.tensor(shift, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift


@dataclass(frozen=True)
class Votes:
    """Per-sample vote counts (N, C) and the plurality and majority answers (-1 = abstain)."""

    counts: torch.Tensor
    plurality: torch.Tensor
    majority: torch.Tensor

    @property
    def abstained(self) -> torch.Tensor:
        return self.majority == ABSTAIN

    @property
    def abstentions(self) -> int:
        return int(self.abstained.sum())


class Ensemble(nn.Module):
    """Members combined by ``rule`` (mean | weighted | plurality | majority), handbook §13.2.2."""

    def __init__(
        self,
        members: Sequence[nn.Module],
        *,
        rule: str = "mean",
        weights: torch.Tensor | Sequence[float] | None = None,
        names: Sequence[str] | None = None,
        adapters: Sequence[nn.Module | None] | None = None,
    ) -> None:
        super().__init__()
        if len(members) == 0:
            raise EnsembleError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)
        self.names = list(names) if names is not None else [f"m{i}" for i in range(len(members))]
        if len(self.names) != len(members):
            raise EnsembleError(f"{len(self.names)} names for {len(members)} members")
        adapters = adapters if adapters is not None else [None] * len(members)
        self.adapters = nn.ModuleList(a if a is not None else nn.Identity() for a in adapters)
        self.meta: dict[str, Any] = {}
        self.rule, self.weights = "mean", None
        self.set_rule(rule, weights)

    def set_rule(
        self, rule: str, weights: torch.Tensor | Sequence[float] | None = None
    ) -> Ensemble:
        """Switch the combination rule (and weights, needed by ``weighted``); returns self."""
        check_rule(rule)
        if rule == "weighted" and weights is None:
            raise EnsembleError("rule 'weighted' needs weights: pass weights= or call fit_weights")
        self.rule = rule
        self.weights = check_weights(weights, len(self.members)) if weights is not None else None
        return self

    def with_rule(
        self, rule: str, weights: torch.Tensor | Sequence[float] | None = None
    ) -> Ensemble:
        """A second view of the same member modules under another rule (no copy)."""
        other = Ensemble(list(self.members), rule=rule, weights=weights, names=self.names,
                         adapters=list(self.adapters))  # fmt: skip
        other.meta = dict(self.meta)
        return other

    def member_log_probs(self, x: torch.Tensor) -> torch.Tensor:
        """``log_softmax`` of every member's scores, stacked: (M, N, C) float32."""
        outs = []
        for adapter, member in zip(self.adapters, self.members, strict=True):
            out = member(adapter(x))
            out = out[0] if isinstance(out, (tuple, list)) else out  # aux heads in train mode
            outs.append(F.log_softmax(out.float(), dim=1))
        return torch.stack(outs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``log q`` (N, C) of the combined distribution (see the module docstring)."""
        return combine(self.member_log_probs(x), self.rule, self.weights)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Predicted classes (N,); ``-1`` where majority voting abstains."""
        return predict(self.member_log_probs(x), self.rule, self.weights)

    def votes(self, x: torch.Tensor) -> Votes:
        """Each class's votes and the plurality/majority answers for a batch."""
        logp = self.member_log_probs(x)
        return Votes(vote_counts(logp), plurality(logp), majority(logp))

    @torch.no_grad()
    def collect(self, batches) -> tuple[torch.Tensor, torch.Tensor]:
        """Members' log-probabilities over a loader, ``(M, N, C)``, and the targets ``(N,)``."""
        was = self.training
        self.eval()
        logps, ys = [], []
        for x, y in batches:
            logps.append(self.member_log_probs(x).cpu())
            ys.append(y.cpu())
        self.train(was)
        if not ys:
            raise EnsembleError("collect: the loader yielded no batches")
        return torch.cat(logps, dim=1), torch.cat(ys)

    def fit_weights(self, val_batches, method: str = "nll") -> torch.Tensor:
        """Fit weights on a VALIDATION loader (``nll``: minimum mixture NLL; ``accuracy``:
        proportional to validation accuracy) and switch to the ``weighted`` rule."""
        logp, y = self.collect(val_batches)
        if method == "nll":
            w = fit_weights(logp, y)
        elif method == "accuracy":
            w = weights_from_accuracy(member_accuracies(logp, y))
        else:
            raise EnsembleError(f"fit_weights: method must be 'nll' or 'accuracy', got {method!r}")
        self.set_rule("weighted", w)
        return w

    @classmethod
    def from_runs(
        cls,
        paths: Sequence[str | Path],
        *,
        rule: str = "mean",
        weights: Sequence[float] | None = None,
        names: Sequence[str] | None = None,
        device: str | torch.device = "cpu",
    ) -> Ensemble:
        """Members from run directories or checkpoint files (their final weights, or early
        stopping's best when the run restored them). Members must share the classes, channels
        and input size; inputs are normalised like the first member's training split."""
        if len(paths) == 0:
            raise EnsembleError("from_runs: no run directories given")
        loaded = [load_run_member(p) for p in paths]
        metas = [meta for _, meta in loaded]
        check_compatible(metas, [str(p) for p in paths])
        adapters = [input_adapter(metas[0]["data"], m["data"]) for m in metas]
        names = names if names is not None else [Path(p).name or str(p) for p in paths]
        ens = cls([m for m, _ in loaded], rule=rule, weights=weights, names=names,
                  adapters=adapters)  # fmt: skip
        ens.meta = {
            "model": metas[0]["model"],
            "data": metas[0]["data"],
            "sources": list(map(str, paths)),
        }
        return ens.to(device).eval()

    @classmethod
    def from_snapshots(
        cls,
        run_dir: str | Path,
        *,
        last: int | None = None,
        rule: str = "mean",
        device: str | torch.device = "cpu",
    ) -> Ensemble:
        """The last ``last`` snapshots (all if None) of a snapshot-ensemble run (§13.2.1)."""
        models, names, meta = load_snapshots(run_dir, last=last)
        ens = cls(models, rule=rule, names=names)
        ens.meta = meta
        return ens.to(device).eval()


def check_compatible(metas: Sequence[dict[str, Any]], where: Sequence[str]) -> None:
    """Members must predict the same classes from the same input shape (clear error if not)."""
    first = metas[0]
    for meta, path in zip(metas[1:], where[1:], strict=True):
        for key in ("num_classes", "in_chans", "input_size"):
            a, b = first["model"].get(key), meta["model"].get(key)
            if a != b:
                raise EnsembleError(
                    f"{path}: model {key} is {b}, but {where[0]} has {a}; ensemble members "
                    "must share classes and input size"
                )
        ca, cb = first.get("data", {}).get("classes"), meta.get("data", {}).get("classes")
        if ca is not None and cb is not None and list(ca) != list(cb):
            raise EnsembleError(f"{path}: classes {cb} differ from {where[0]}'s {ca}")
        pa = first.get("config", {}).get("data", {}).get("preprocess") or []
        pb = meta.get("config", {}).get("data", {}).get("preprocess") or []
        if pa != pb:
            raise EnsembleError(
                f"{path}: data.preprocess {pb} differs from {where[0]}'s {pa}; one input cannot "
                "feed both (combine them with `cnnlab ensemble`, which uses each member's data)"
            )


def input_adapter(ref: dict[str, Any], own: dict[str, Any]) -> InputAdapter | None:
    """Map inputs normalised with ``ref``'s mean/std to ``own``'s normalisation:
    ``x * s_r / s_o + (m_r - m_o) / s_o`` per channel (None when they are equal)."""
    if "mean" not in ref or "mean" not in own:
        return None
    mr, sr, mo, so = ref["mean"], ref["std"], own["mean"], own["std"]
    if list(mr) == list(mo) and list(sr) == list(so):
        return None
    scale = [a / b for a, b in zip(sr, so, strict=True)]
    shift = [(a - b) / s for a, b, s in zip(mr, mo, so, strict=True)]
    return InputAdapter(scale, shift)
