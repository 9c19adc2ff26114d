"""Combination rules of a multi-model ensemble (handbook §13.2.2) as pure tensor functions.

Every rule takes the members' log-probabilities ``logp (M, N, C)`` (M members, N samples,
C classes; ``log_softmax`` of each member's scores) and works in the log domain, so no
probability underflows to 0 and the combined distribution sums to 1 exactly.

- ``mean``: simple averaging of probabilities, eq. (13.2).
- ``weighted``: ``sum_i w_i p_i`` with ``w_i >= 0`` and ``sum_i w_i = 1`` (eq. 13.3-13.4 without
  the book's extra ``/N``, handbook E.6 item 66: it only rescales and breaks normalisation).
- ``plurality``: every member votes for its argmax (its lowest index on an internal tie); the
  class with most votes wins. Ties (handbook E.6 item 67) go to the larger summed (= mean)
  probability of the tied classes, compared at 4 decimals of the mean probability (closer
  values count as equal, so the order survives float32 outputs), then to the lowest index.
- ``majority``: a class needs MORE than half of the votes (2 v > M), otherwise the ensemble
  abstains (the "rejection option"; ``ABSTAIN`` = -1 in predictions). Exactly half is not enough.

Voting rules also give a distribution ``q``, proportional to ``(M+1) v + M r`` with ``v`` the
vote counts and ``r`` the mean probability rounded to 4 decimals: a vote outweighs any
probability difference, so ``argmax q`` (the first maximum) is exactly the plurality answer;
``q`` is renormalised to sum 1 and keeps every class positive, so a log-likelihood exists.

Scoring an abstention: it counts as an error in ``accuracy`` (correct answers / all samples);
``answered_accuracy`` is the accuracy on the answered samples and ``coverage`` their fraction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from cnnlab.errors import EnsembleError

RULES = ("mean", "weighted", "plurality", "majority")
ABSTAIN = -1
TIE_DECIMALS = 1e4  # plurality ties: mean probabilities compared at 4 decimals


def check_log_probs(logp: torch.Tensor) -> None:
    """A clear error unless ``logp`` is a float (M, N, C) tensor of member log-probabilities."""
    if not isinstance(logp, torch.Tensor) or logp.dim() != 3 or not logp.is_floating_point():
        shape = tuple(logp.shape) if isinstance(logp, torch.Tensor) else type(logp).__name__
        raise EnsembleError(
            f"member log-probabilities: expected a float (M, N, C) tensor, got {shape}"
        )
    if logp.shape[0] < 1 or logp.shape[2] < 2:
        raise EnsembleError(
            f"member log-probabilities: need M >= 1 and C >= 2, got {tuple(logp.shape)}"
        )


def check_weights(weights: torch.Tensor | list[float], members: int) -> torch.Tensor:
    """Weights as a float64 (M,) tensor: non-negative, finite, normalised to sum 1 (simplex)."""
    w = torch.as_tensor(weights, dtype=torch.float64).flatten()
    if w.numel() != members:
        raise EnsembleError(
            f"ensemble weights: expected {members} values (one per member), got {w.numel()}"
        )
    if not torch.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise EnsembleError(
            f"ensemble weights must be finite, >= 0 and not all 0, got {w.tolist()}"
        )
    return w / w.sum()


def average(logp: torch.Tensor, weights: torch.Tensor | list[float] | None = None) -> torch.Tensor:
    """``log(sum_i w_i p_i)`` (N, C); uniform ``w_i = 1/M`` when ``weights`` is None (eq. 13.2)."""
    check_log_probs(logp)
    m = logp.shape[0]
    if weights is None:
        return torch.logsumexp(logp, dim=0) - math.log(m)
    w = check_weights(weights, m).to(logp.device)
    log_w = w.log().to(logp.dtype).view(m, 1, 1)  # log 0 = -inf drops a member exactly
    return torch.logsumexp(logp + log_w, dim=0)


def vote_counts(logp: torch.Tensor) -> torch.Tensor:
    """``counts[n, c]`` = number of members whose argmax for sample n is class c (int64 (N, C))."""
    check_log_probs(logp)
    _, n, c = logp.shape
    top = logp.argmax(dim=2)  # (M, N)
    counts = torch.zeros(n, c, dtype=torch.int64, device=logp.device)
    return counts.scatter_add_(1, top.t(), torch.ones_like(top.t()))


def vote_log_distribution(logp: torch.Tensor) -> torch.Tensor:
    """``log q`` (N, C) of the voting rules, ``q ~ (M+1) v + M r`` (see the module docstring)."""
    m = logp.shape[0]
    votes = vote_counts(logp).double() * (m + 1)  # (N, C)
    log_psum = torch.logsumexp(logp.double(), dim=0)  # log(M p_mean), (N, C)
    rounded = torch.round(log_psum.exp() / m * TIE_DECIMALS) / TIE_DECIMALS  # r
    # Where r rounds to 0 (no chance of a tie at the top: a voted class has p >= 1/(C M)),
    # keep the exact tiny probability so the likelihood stays finite.
    log_num = torch.where(
        rounded > 0, torch.log(votes + m * rounded), torch.logaddexp(votes.log(), log_psum)
    )
    return (log_num - torch.logsumexp(log_num, dim=1, keepdim=True)).to(logp.dtype)


def plurality(logp: torch.Tensor) -> torch.Tensor:
    """The class with most votes (N,); ties: larger mean probability (4 decimals), then the
    lowest index."""
    return vote_log_distribution(logp).argmax(dim=1)


def majority(logp: torch.Tensor) -> torch.Tensor:
    """The class with more than half of the votes (N,), else ``ABSTAIN`` (-1)."""
    m = logp.shape[0]
    counts = vote_counts(logp)
    best, cls = counts.max(dim=1)
    return torch.where(2 * best > m, cls, torch.full_like(cls, ABSTAIN))


def combine(
    logp: torch.Tensor, rule: str, weights: torch.Tensor | list[float] | None = None
) -> torch.Tensor:
    """The ensemble's log-distribution (N, C) under ``rule`` (voting rules: ``q`` above)."""
    check_rule(rule)
    if rule == "mean":
        return average(logp)
    if rule == "weighted":
        if weights is None:
            raise EnsembleError("rule 'weighted' needs weights (fit them with fit_weights)")
        return average(logp, weights)
    return vote_log_distribution(logp)


def predict(
    logp: torch.Tensor, rule: str, weights: torch.Tensor | list[float] | None = None
) -> torch.Tensor:
    """Predicted classes (N,) under ``rule``; ``ABSTAIN`` where majority voting refuses."""
    if rule == "majority":
        return majority(logp)
    return combine(logp, rule, weights).argmax(dim=1)


def check_rule(rule: str) -> None:
    if rule not in RULES:
        raise EnsembleError(f"unknown combination rule {rule!r}; valid rules: {', '.join(RULES)}")


@dataclass(frozen=True)
class RuleScore:
    """Accuracy (abstentions count as errors), NLL of the combined distribution, abstentions."""

    accuracy: float
    nll: float
    abstentions: int
    num_samples: int

    @property
    def coverage(self) -> float:
        return 1.0 - self.abstentions / self.num_samples

    @property
    def answered_accuracy(self) -> float | None:
        answered = self.num_samples - self.abstentions
        return self.accuracy * self.num_samples / answered if answered else None

    def to_dict(self) -> dict[str, float | int | None]:
        return {
            "acc": self.accuracy,
            "nll": self.nll,
            "abstentions": self.abstentions,
            "coverage": self.coverage,
            "answered_acc": self.answered_accuracy,
            "num_samples": self.num_samples,
        }


def score(
    logp: torch.Tensor,
    targets: torch.Tensor,
    rule: str,
    weights: torch.Tensor | list[float] | None = None,
) -> RuleScore:
    """Score ``rule`` on cached member outputs against ``targets`` (N,)."""
    log_q = combine(logp, rule, weights)
    if targets.shape != (log_q.shape[0],):
        raise EnsembleError(
            f"targets: expected shape ({log_q.shape[0]},), got {tuple(targets.shape)}"
        )
    pred = predict(logp, rule, weights)
    nll = -log_q.gather(1, targets.view(-1, 1).to(log_q.device)).double().mean().item()
    correct = int((pred == targets.to(pred.device)).sum())
    return RuleScore(correct / targets.numel(), nll, int((pred == ABSTAIN).sum()), targets.numel())
