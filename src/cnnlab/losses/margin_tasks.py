"""The margin losses as tasks: L-Softmax and center loss (Handbook §9.1.4-§9.1.5).

Both need more than logits: the deep features (``model(x, return_features=True)``) and the
linear head's weight, and center loss also updates its class centres after each optimiser step.
Their builders (registered in ``LOSSES``) therefore return a :class:`~cnnlab.losses.task.Task`;
the formulas themselves are in :mod:`cnnlab.losses.margin`.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
import torch.nn as nn

from cnnlab.losses._common import as_float, check_choice, check_classes, check_range
from cnnlab.losses.margin import (
    center_loss_value,
    center_update_delta,
    large_margin_logits,
    softmax_ce,
)
from cnnlab.losses.task import Task, unwrap
from cnnlab.registry import LOSSES


def _linear_head(model: nn.Module, task: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The weight and bias of ``model.head`` when it is an ``nn.Linear``, else a clear error."""
    net = unwrap(model)
    head = getattr(net, "head", None)
    if not isinstance(head, nn.Linear):
        raise TypeError(
            f"{task} needs a model whose `head` is an nn.Linear (the classifier weight W); "
            f"{type(net).__name__}.head is {type(head).__name__}"
        )
    return head.weight, head.bias


def _logits_and_features(
    model: nn.Module, x: torch.Tensor, task: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, (B, D) features fed to the head) in one forward pass.

    Zoo models answer ``model(x, return_features=True)``; calling the model (not its
    ``forward_features``) keeps wrappers such as DDP in the loop. Other models need
    ``forward_features`` and ``head``.
    """
    net = unwrap(model)
    if "return_features" in inspect.signature(net.forward).parameters:
        logits, feats = model(x, return_features=True)
    elif callable(getattr(net, "forward_features", None)) and callable(getattr(net, "head", None)):
        feats = net.forward_features(x)
        logits = net.head(feats)
    else:
        raise TypeError(
            f"{task} needs the deep feature fed into the classifier: a model with "
            f"forward(x, return_features=True) or model.forward_features(x) and model.head; "
            f"{type(net).__name__} has neither"
        )
    if feats.dim() != 2:
        raise ValueError(f"{task}: the features must be (B, D), got {tuple(feats.shape)}")
    return logits, feats


class LargeMarginSoftmaxTask(Task):
    """L-Softmax step (Liu et al. 2016, Handbook §9.1.4): CE on margin logits of a linear head.

    Built by the ``l_softmax`` loss. Returns the plain logits ``head(features)`` for accuracy.
    ``iteration`` (a buffer, saved with the task) counts optimiser steps for the annealing of
    lambda; see :func:`cnnlab.losses.margin.large_margin_logits`.
    """

    def __init__(
        self,
        m: int = 2,
        lambda_base: float = 0.0,
        lambda_gamma: float = 0.0,
        lambda_power: float = 1.0,
        lambda_min: float = 0.0,
    ) -> None:
        super().__init__()
        self.m = m
        self.lambda_base, self.lambda_gamma = lambda_base, lambda_gamma
        self.lambda_power, self.lambda_min = lambda_power, lambda_min
        self.register_buffer("iteration", torch.zeros((), dtype=torch.long))

    def current_lambda(self) -> float:
        """max(lambda_min, base * (1 + gamma * t)^-power) at step t; 0 when base is 0."""
        if self.lambda_base == 0:
            return 0.0
        t = float(self.iteration.item())
        decayed = self.lambda_base * (1.0 + self.lambda_gamma * t) ** (-self.lambda_power)
        return max(self.lambda_min, decayed)

    def training_step(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        weight, bias = _linear_head(model, "l_softmax")
        _, feats = _logits_and_features(model, x, "l_softmax")
        feats = as_float(feats)
        # The angle and its Chebyshev polynomial need full precision: no bf16/fp16 autocast here.
        with torch.autocast(feats.device.type, enabled=False):
            margin, logits = large_margin_logits(
                feats,
                as_float(weight),
                None if bias is None else as_float(bias),
                y,
                self.m,
                self.current_lambda(),
            )
        return softmax_ce(margin, y), logits

    def after_step(self) -> None:
        self.iteration += 1

    def extra_repr(self) -> str:
        return f"m={self.m}, lambda_base={self.lambda_base}"


class CenterLossTask(Task):
    """Softmax CE + lam * center loss on the deep features (Wen et al. 2016, Handbook §9.1.5).

    Built by the ``center`` loss. ``centers`` (C, D) is a buffer: zeros at start (created on
    the first batch when ``feat_dim`` is None), never touched by the optimiser, and moved
    towards the class means by :meth:`after_step` with rate ``alpha`` using the features of the
    step just taken (:func:`cnnlab.losses.margin.center_update_delta`).
    """

    def __init__(
        self,
        num_classes: int,
        lam: float = 0.01,
        alpha: float = 0.5,
        feat_dim: int | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        self.num_classes, self.lam, self.alpha, self.reduction = num_classes, lam, alpha, reduction
        self.register_buffer("centers", torch.zeros(num_classes, feat_dim or 0))
        self._pending: tuple[torch.Tensor, torch.Tensor] | None = None

    def _ensure_centers(self, feats: torch.Tensor) -> None:
        dim = feats.shape[1]
        if self.centers.shape[1] == 0:
            self.centers = torch.zeros(self.num_classes, dim, device=feats.device)
        elif self.centers.shape[1] != dim:
            raise ValueError(
                f"center: the centres have {self.centers.shape[1]} dimensions but the model's "
                f"features have {dim} (set feat_dim to match, or leave it None)"
            )

    def training_step(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        logits, feats = _logits_and_features(model, x, "center")
        f = as_float(feats)
        self._ensure_centers(f)
        loss = softmax_ce(logits, y) + self.lam * center_loss_value(
            f, self.centers, y, self.reduction
        )
        if self.training:
            self._pending = (f.detach(), y.detach())
        return loss, logits

    @torch.no_grad()
    def after_step(self) -> None:
        if self._pending is None:
            return
        feats, y = self._pending
        self._pending = None
        self.centers.sub_(self.alpha * center_update_delta(self.centers, feats, y))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:  # type: ignore[override]
        # Lazily sized centres (feat_dim=None, no batch seen yet) take the checkpoint's shape.
        saved = state_dict.get(prefix + "centers")
        if saved is not None and self.centers.shape[1] == 0 and saved.dim() == 2:
            self.centers = torch.zeros_like(saved, device=self.centers.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return f"lam={self.lam}, alpha={self.alpha}, reduction={self.reduction!r}"


@LOSSES.register("l_softmax")
def l_softmax(
    *,
    num_classes: int,
    class_counts: torch.Tensor | None = None,
    m: int = 2,
    lambda_base: float = 0.0,
    lambda_gamma: float = 0.0,
    lambda_power: float = 1.0,
    lambda_min: float = 0.0,
) -> Any:
    """Large-margin softmax (L-Softmax), cos(theta_y) -> psi(m theta_y), margin m=2 (§9.1.4).

    Returns a Task: the loss needs the features (``model(x, return_features=True)``) and a linear
    ``model.head`` (its weight W; its bias is added unchanged to every logit, see
    ``large_margin_logits``).
    m = 1 is softmax cross-entropy exactly. Optional annealing (Liu et al. 2016): at step t the
    true-class logit blends cos and psi with ``lam = max(lambda_min, lambda_base * (1 +
    lambda_gamma * t) ** -lambda_power)``; lambda_base = 0 (default) turns it off. The paper's
    MNIST schedule is lambda_base=1000, lambda_gamma=2.5e-5, lambda_power=35, lambda_min=0.
    """
    check_classes("l_softmax", num_classes)
    if isinstance(m, bool) or not isinstance(m, int) or m < 1:
        raise ValueError(f"l_softmax: m must be an integer >= 1 (1 = plain softmax), got {m!r}")
    return LargeMarginSoftmaxTask(
        m=m,
        lambda_base=check_range("l_softmax", "lambda_base", lambda_base, 0.0),
        lambda_gamma=check_range("l_softmax", "lambda_gamma", lambda_gamma, 0.0),
        lambda_power=check_range("l_softmax", "lambda_power", lambda_power, 0.0),
        lambda_min=check_range("l_softmax", "lambda_min", lambda_min, 0.0),
    )


@LOSSES.register("center")
def center(
    *,
    num_classes: int,
    class_counts: torch.Tensor | None = None,
    lam: float = 0.01,
    alpha: float = 0.5,
    feat_dim: int | None = None,
    reduction: str = "mean",
) -> Any:
    """Center loss: CE + lam/2 * ||x_i - c_{y_i}||^2 on the deep features, lam=0.01, alpha=0.5.

    Wen et al. 2016 (Handbook §9.1.5, eqs. 9.11-9.13). Returns a Task that uses the features
    from ``model(x, return_features=True)`` (the vector fed into the classifier, not the
    logits). The class centres are a buffer (zeros at start, saved with the task), updated
    after each optimiser step by ``c_j <- c_j - alpha * Delta c_j`` (E.4 item 42).
    reduction: "mean" (default: the centre term averaged over the batch, as in Wen et al.'s
    code, so lam does not depend on the batch size) or "sum" (the handbook's eq. 9.13).
    feat_dim: the feature width D; None = taken from the first batch.
    """
    check_classes("center", num_classes)
    if feat_dim is not None and (
        isinstance(feat_dim, bool) or not isinstance(feat_dim, int) or feat_dim < 1
    ):
        raise ValueError(f"center: feat_dim must be a positive integer or None, got {feat_dim!r}")
    return CenterLossTask(
        num_classes=num_classes,
        lam=check_range("center", "lam", lam, 0.0),
        alpha=check_range("center", "alpha", alpha, 0.0, 1.0),
        feat_dim=feat_dim,
        reduction=check_choice("center", "reduction", reduction, ("mean", "sum")),
    )
