"""Weights of weighted averaging (handbook §13.2.2, eq. 13.3-13.4): on the simplex, from a
validation split only (never from the test set).

Two ways:

- ``weights_from_accuracy``: proportional to each member's validation accuracy (the book's
  suggestion: a more accurate model gets a larger weight).
- ``fit_weights``: the weights that minimise the validation negative log-likelihood of the
  mixture ``sum_i w_i p_i``. The NLL is convex in ``w``; the EM update for mixture weights
  (``w_i <- mean_n  w_i p_i(y_n) / sum_j w_j p_j(y_n)``) never leaves the simplex, never
  increases the NLL and converges to the optimum, with no step size to tune.
"""

from __future__ import annotations

import torch

from cnnlab.ensembles.combine import EnsembleError, check_log_probs


def weights_from_accuracy(accuracies: torch.Tensor | list[float]) -> torch.Tensor:
    """``w_i = acc_i / sum_j acc_j`` (float64 (M,)); uniform if every accuracy is 0."""
    acc = torch.as_tensor(accuracies, dtype=torch.float64).flatten()
    if acc.numel() == 0 or not torch.isfinite(acc).all() or (acc < 0).any():
        raise EnsembleError(f"accuracies must be finite and >= 0, got {acc.tolist()}")
    if acc.sum() == 0:
        return torch.full_like(acc, 1.0 / acc.numel())
    return acc / acc.sum()


def member_accuracies(logp: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Each member's top-1 accuracy (float64 (M,)) from ``logp (M, N, C)``."""
    check_log_probs(logp)
    _check_targets(logp, targets)
    hits = logp.argmax(dim=2) == targets.to(logp.device).view(1, -1)  # (M, N)
    return hits.double().mean(dim=1).cpu()


def fit_weights(
    logp: torch.Tensor, targets: torch.Tensor, *, max_iter: int = 2000, tol: float = 1e-9
) -> torch.Tensor:
    """Simplex weights (float64 (M,)) minimising the NLL of ``sum_i w_i p_i`` on the given
    (validation) outputs ``logp (M, N, C)`` with labels ``targets (N,)``; EM from uniform."""
    check_log_probs(logp)
    _check_targets(logp, targets)
    m, n, _ = logp.shape
    # (M, N): each member's log-probability of the true class
    lp = logp.double().gather(2, targets.to(logp.device).view(1, n, 1).expand(m, n, 1))[..., 0]
    w = torch.full((m,), 1.0 / m, dtype=torch.float64, device=lp.device)
    for _ in range(max_iter):
        joint = lp + w.log().view(m, 1)  # log w_i p_i(y_n)
        resp = (joint - torch.logsumexp(joint, dim=0, keepdim=True)).exp()  # (M, N)
        new = resp.mean(dim=1)
        new = new / new.sum()  # guard rounding: stay exactly on the simplex
        done = (new - w).abs().max().item() < tol
        w = new
        if done:
            break
    return w.cpu()


def mixture_nll(logp: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> float:
    """Mean NLL of the mixture ``sum_i w_i p_i`` (for checks and reports)."""
    m, n, _ = logp.shape
    lp = logp.double().gather(2, targets.to(logp.device).view(1, n, 1).expand(m, n, 1))[..., 0]
    w = torch.as_tensor(weights, dtype=torch.float64, device=lp.device).view(m, 1)
    return -torch.logsumexp(lp + w.log(), dim=0).mean().item()


def _check_targets(logp: torch.Tensor, targets: torch.Tensor) -> None:
    n, c = logp.shape[1], logp.shape[2]
    if not isinstance(targets, torch.Tensor) or targets.shape != (n,):
        got = tuple(targets.shape) if isinstance(targets, torch.Tensor) else type(targets).__name__
        raise EnsembleError(f"targets: expected a ({n},) tensor of class ids, got {got}")
    if n and (int(targets.min()) < 0 or int(targets.max()) >= c):
        raise EnsembleError(
            f"targets: class ids must be in [0, {c}), got {targets.unique().tolist()}"
        )
