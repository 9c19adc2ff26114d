"""Stacking with out-of-fold predictions (handbook §13.2.2: "second-level" ensembles).

The members' score vectors are concatenated into a new feature and a meta-model maps it to the
classes. The book warns that stacking overfits; the standard remedy (RECONSTRUCTED, not in the
book) is to never let a meta-model predict a row it was fitted on. The scheme here:

1. The members are trained once, on the training split only.
2. Their log-probabilities on a held-out VALIDATION split are the meta-features
   (``(M, N, C) -> (N, M*C)``; ``features="probs"`` uses probabilities instead).
3. The validation rows are split into K folds (stratified by class, fixed seed). For each
   fold k a meta-model is fitted on the other K-1 folds and predicts fold k: every row gets an
   out-of-fold (OOF) prediction from a meta-model that never saw it. The OOF accuracy / NLL
   is the honest estimate used to report stacking and to choose it over plain averaging.
   ``fold_log`` records (fitted rows, predicted rows) of every fold for inspection.
4. The final meta-model is fitted on the whole validation split and applied to the test set.

Meta-models: multinomial logistic regression (``logistic``: one linear layer, L-BFGS, L2
penalty) or a small MLP (``mlp``: one hidden ReLU layer, Adam, weight decay). Features are
standardised with statistics of the rows each meta-model is fitted on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnlab.ensembles.combine import EnsembleError, check_log_probs

META_MODELS = ("logistic", "mlp")
FEATURES = ("logprobs", "probs")
LOG_FLOOR = -30.0  # log-probabilities below this carry no information, only scale


def fold_assignment(labels: torch.Tensor, folds: int, seed: int = 0) -> torch.Tensor:
    """Fold id (N,) per row: shuffled, then dealt round-robin within each class (stratified)."""
    n = labels.numel()
    if not 2 <= folds <= n:
        raise EnsembleError(f"stacking: folds must be in [2, {n}] (validation rows), got {folds}")
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=gen)
    order = perm[torch.argsort(labels[perm], stable=True)]  # grouped by class, shuffled within
    fold = torch.empty(n, dtype=torch.int64)
    fold[order] = torch.arange(n) % folds
    return fold


@dataclass
class _Scaler:
    mean: torch.Tensor
    std: torch.Tensor

    @staticmethod
    def fit(x: torch.Tensor) -> _Scaler:
        return _Scaler(x.mean(0), x.std(0, unbiased=False).clamp_min(1e-6))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


@dataclass
class Stacker:
    """Out-of-fold stacking (see module docstring); ``fit`` then ``predict_log_proba``."""

    meta: str = "logistic"
    folds: int = 5
    features: str = "logprobs"
    l2: float = 1e-3
    hidden: int = 32
    epochs: int = 300
    seed: int = 0
    fold_log: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)
    oof_log_proba: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.meta not in META_MODELS:
            raise EnsembleError(f"stacking meta: expected one of {META_MODELS}, got {self.meta!r}")
        if self.features not in FEATURES:
            raise EnsembleError(
                f"stacking features: expected one of {FEATURES}, got {self.features!r}"
            )
        if self.l2 < 0 or self.hidden < 1 or self.epochs < 1:
            raise EnsembleError("stacking: need l2 >= 0, hidden >= 1 and epochs >= 1")
        self._model: tuple[nn.Module, _Scaler] | None = None

    def meta_features(self, logp: torch.Tensor) -> torch.Tensor:
        """``(M, N, C)`` member log-probabilities -> ``(N, M*C)`` float64 features."""
        check_log_probs(logp)
        x = logp.double().clamp_min(LOG_FLOOR)
        x = x.exp() if self.features == "probs" else x
        return x.permute(1, 0, 2).reshape(x.shape[1], -1)  # (M, N, C) -> (N, M*C)

    def fit(self, logp: torch.Tensor, targets: torch.Tensor) -> Stacker:
        """Out-of-fold predictions on the validation outputs, then the final meta-model."""
        # clone: outputs collected under inference_mode cannot enter autograd
        x, y = self.meta_features(logp).clone(), targets.cpu().long().clone()
        c = logp.shape[2]
        fold = fold_assignment(y, self.folds, self.seed)
        oof = torch.empty(x.shape[0], c, dtype=torch.float64)
        self.fold_log = []
        for k in range(self.folds):
            fit_rows = torch.nonzero(fold != k).flatten()
            held = torch.nonzero(fold == k).flatten()
            self.fold_log.append((fit_rows, held))
            model = self._fit_one(x[fit_rows], y[fit_rows], c)
            oof[held] = self._apply(model, x[held])
        self.oof_log_proba = oof
        self._model = self._fit_one(x, y, c)
        return self

    def predict_log_proba(self, logp: torch.Tensor) -> torch.Tensor:
        """Log-probabilities (N, C) of the final meta-model on new member outputs (the test set)."""
        if self._model is None:
            raise EnsembleError("stacking: call fit() on validation outputs first")
        return self._apply(self._model, self.meta_features(logp)).float()

    def oof_scores(self, targets: torch.Tensor) -> dict[str, float]:
        """Accuracy and NLL of the out-of-fold predictions (no row seen by its meta-model)."""
        if self.oof_log_proba is None:
            raise EnsembleError("stacking: call fit() first")
        y = targets.cpu().long()
        acc = (self.oof_log_proba.argmax(1) == y).double().mean().item()
        return {"oof_acc": acc, "oof_nll": F.nll_loss(self.oof_log_proba, y).item()}

    def _apply(self, fitted: tuple[nn.Module, _Scaler], x: torch.Tensor) -> torch.Tensor:
        model, scaler = fitted
        with torch.no_grad():
            return F.log_softmax(model(scaler(x)), dim=1)

    def _fit_one(self, x: torch.Tensor, y: torch.Tensor, c: int) -> tuple[nn.Module, _Scaler]:
        scaler = _Scaler.fit(x)
        xs = scaler(x)
        with torch.random.fork_rng(devices=[]):  # meta-model init must not move global RNG
            torch.manual_seed(self.seed)
            if self.meta == "logistic":
                model = nn.Linear(x.shape[1], c).double()
            else:
                model = nn.Sequential(nn.Linear(x.shape[1], self.hidden), nn.ReLU(),
                                      nn.Linear(self.hidden, c)).double()  # fmt: skip
        weights = [p for n, p in model.named_parameters() if n.endswith("weight")]

        def loss_fn() -> torch.Tensor:
            penalty = sum((w**2).sum() for w in weights)
            return F.cross_entropy(model(xs), y) + 0.5 * self.l2 * penalty

        if self.meta == "logistic":
            opt = torch.optim.LBFGS(model.parameters(), max_iter=self.epochs,
                                    line_search_fn="strong_wolfe")  # fmt: skip

            def closure() -> torch.Tensor:
                opt.zero_grad()
                loss = loss_fn()
                loss.backward()
                return loss

            opt.step(closure)
        else:
            opt = torch.optim.Adam(model.parameters(), lr=1e-2)
            for _ in range(self.epochs):
                opt.zero_grad()
                loss_fn().backward()
                opt.step()
        return model.eval(), scaler
