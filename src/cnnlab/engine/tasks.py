"""Tasks: what one training step computes, so the loop itself never changes (DESIGN.md).

A task turns a batch into ``(loss, logits)``. Plain classification applies a loss to the model's
logits; L-Softmax and center loss (Handbook §9.1.4-§9.1.5) need the deep features and the linear
head, and center loss also updates its class centres after each optimiser step. ``build_task``
makes the right task for any registered loss name.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
import torch.nn as nn

from cnnlab.losses import LOSSES
from cnnlab.losses._common import as_float
from cnnlab.losses.margin import (
    center_loss_value,
    center_update_delta,
    large_margin_logits,
    softmax_ce,
)


class Task(nn.Module):
    """Base task. Subclasses may own parameters/buffers (saved with the checkpoint)."""

    def training_step(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def after_step(self) -> None:
        """Hook run after the optimiser step (e.g. a non-gradient centre update)."""


class ClassificationTask(Task):
    """loss(model(x), y) with any registered classification loss."""

    def __init__(self, loss: nn.Module) -> None:
        super().__init__()
        self.loss = loss

    def training_step(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        logits = model(x)
        return self.loss(logits, y), logits


def unwrap(model: nn.Module) -> nn.Module:
    """The network inside a (Distributed)DataParallel wrapper, else ``model`` itself."""
    wrappers = (nn.parallel.DistributedDataParallel, nn.DataParallel)
    return model.module if isinstance(model, wrappers) else model


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


def build_task(
    name: str,
    *,
    num_classes: int,
    class_counts: torch.Tensor | None = None,
    **options: Any,
) -> Task:
    """The Task for loss ``name``: its builder's Task, or a loss module in ClassificationTask.

    ``options`` are the loss's own options (checked against its builder's signature).
    """
    built = LOSSES.build(name, num_classes=num_classes, class_counts=class_counts, **options)
    return built if isinstance(built, Task) else ClassificationTask(built)
