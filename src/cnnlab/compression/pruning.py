"""Connection-level pruning and structured sparsity (Handbook §4.2).

**Iterative magnitude pruning** (Han et al. 2015), the handbook's loop: rank weights by |w|,
remove the smallest, fine-tune with the pruned weights held at zero, repeat. Each of the n
iterations raises the sparsity along ``s_i = 1 - (1 - s)^(i/n)`` (the same fraction of the
*remaining* weights each time), by a global ranking over all layers or per layer, using
``torch.nn.utils.prune`` (l1-unstructured; integer amounts, so the final sparsity is exact:
``round(s N)`` zeros globally, ``round(s n_l)`` per layer). ``threshold`` switches to Han et
al.'s rule: remove weights with |w| < threshold * std(layer's remaining weights). The masks are
made permanent at the end and recorded as the "sparse" encoding, which later fine-tuning keeps.

**Structured sparsity** (SSL, Wen et al. 2016, eq. 4.2): the group-lasso penalty
``lambda_filter * sum_filters ||W_n,:,:,:||_2 + lambda_channel * sum_channels ||W_:,c,:,:||_2``
over convolutions, as a Task wrapper usable in any training (``GroupLassoTask``), and as a
step that fine-tunes with it so that whole filters shrink towards zero before filter pruning.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.utils import prune

from cnnlab.compression.state import CompressState, weight_modules
from cnnlab.compression.steps import (
    COMPRESSION,
    Step,
    check_choice,
    check_fraction,
    check_int,
    check_positive,
)
from cnnlab.engine.tasks import Task
from cnnlab.training.assemble import build_task

SCOPES = ("global", "layer")


def sparsity_schedule(sparsity: float, iterations: int) -> list[float]:
    """Target sparsity after each iteration: 1 - (1 - s)^(i/n), ending exactly at s."""
    return [1 - (1 - sparsity) ** (i / iterations) for i in range(1, iterations + 1)]


def _pruned_count(module: nn.Module) -> int:
    mask = getattr(module, "weight_mask", None)
    return 0 if mask is None else int((mask == 0).sum())


def prune_to(modules: list[nn.Module], target: float, scope: str) -> None:
    """Raise the pruned fraction of the modules' weights to ``target`` (l1-unstructured)."""
    if scope == "global":
        total = sum(m.weight.numel() for m in modules)
        extra = round(target * total) - sum(_pruned_count(m) for m in modules)
        if extra > 0:  # importance scores made contiguous: channels-last weights cannot view(-1)
            scores = {(m, "weight"): m.weight.detach().contiguous() for m in modules}
            prune.global_unstructured(
                list(scores), pruning_method=prune.L1Unstructured, amount=extra,
                importance_scores=scores,
            )  # fmt: skip
        return
    for m in modules:
        extra = round(target * m.weight.numel()) - _pruned_count(m)
        if extra > 0:
            prune.l1_unstructured(m, "weight", amount=extra)


def prune_below_threshold(modules: list[nn.Module], threshold: float) -> None:
    """Han et al.'s rule: prune |w| < threshold * std of the layer's unpruned weights."""
    for m in modules:
        w = m.weight.detach()
        alive = w[w != 0]
        cut = threshold * (alive.std() if alive.numel() > 1 else torch.tensor(0.0))
        keep = (w.abs() >= cut) & (w != 0)
        prune.custom_from_mask(m, "weight", mask=keep)


def sparsity_report(modules: list[tuple[str, nn.Module]]) -> dict[str, Any]:
    """Zeros per layer and overall, counted on the weights themselves."""
    layers = {n: int((m.weight == 0).sum()) / m.weight.numel() for n, m in modules}
    zeros = sum(int((m.weight == 0).sum()) for _, m in modules)
    total = sum(m.weight.numel() for _, m in modules)
    return {"sparsity": zeros / max(total, 1), "zeros": zeros, "weights": total,
            "per_layer": layers}  # fmt: skip


def magnitude_prune(
    state: CompressState, ctx: Any, *, sparsity: float, iterations: int, finetune_epochs: int,
    scope: str = "global", threshold: float | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The prune -> fine-tune loop on ``state.model`` (in place); see the module docstring."""
    named = weight_modules(state.model)
    modules = [m for _, m in named]
    for name, m in named:  # zeros from an earlier pruning step stay pruned (and counted)
        enc = state.encodings.pop(f"{name}.weight", None)
        if enc is not None and enc["kind"] == "sparse":
            prune.custom_from_mask(m, "weight", mask=m.weight.detach() != 0)
    history = []
    for i, target in enumerate(sparsity_schedule(sparsity, iterations), start=1):
        if threshold is not None:
            prune_below_threshold(modules, threshold)
        else:
            prune_to(modules, target, scope)
        # During fine-tuning the masks live in the prune hooks; the state's own sparse
        # encodings are added only at the end, so ctx.finetune must not apply them twice.
        ctx.finetune(state, finetune_epochs)
        report = sparsity_report(named)
        history.append({"iteration": i, "sparsity": report["sparsity"]})
        ctx.log(f"prune_magnitude: iteration {i}/{iterations}, sparsity {report['sparsity']:.3f}")
    for m in modules:
        if prune.is_pruned(m):
            prune.remove(m, "weight")
    for name, m in named:
        state.encodings[f"{name}.weight"] = {"kind": "sparse", "shape": list(m.weight.shape)}
    return {**sparsity_report(named), "iterations": history}


@COMPRESSION.register("prune_magnitude")
def prune_magnitude(
    *, sparsity: float = 0.8, iterations: int = 3, finetune_epochs: int = 1,
    scope: str = "global", threshold: float | None = None,
) -> Step:  # fmt: skip
    """Iterative magnitude pruning with fine-tuning (Han et al. 2015), masks kept fixed."""
    options = {
        "sparsity": check_fraction("sparsity", sparsity),
        "iterations": check_int("iterations", iterations, 1),
        "finetune_epochs": check_int("finetune_epochs", finetune_epochs),
        "scope": check_choice("scope", scope, SCOPES),
        "threshold": None if threshold is None else check_positive("threshold", threshold),
    }

    def apply(state: CompressState, ctx: Any) -> dict[str, Any]:
        return magnitude_prune(state, ctx, **options)

    return Step("prune_magnitude", options, apply)


# ---------------------------------------------------------------- structured sparsity


def group_lasso_penalty(
    model: nn.Module, lambda_filter: float, lambda_channel: float = 0.0, eps: float = 1e-12
) -> torch.Tensor:
    """SSL's group lasso over every Conv2d: filters (output channels) and input channels."""
    total = torch.zeros(())
    for m in model.modules():
        if not isinstance(m, nn.Conv2d):
            continue
        w = m.weight
        total = total.to(w.device)
        if lambda_filter:
            norms = (w.pow(2).sum(dim=(1, 2, 3)) + eps).sqrt()  # (C_out,) ||W_n,:,:,:||_2
            total = total + lambda_filter * norms.sum()
        if lambda_channel:
            norms = (w.pow(2).sum(dim=(0, 2, 3)) + eps).sqrt()  # (C_in,) ||W_:,c,:,:||_2
            total = total + lambda_channel * norms.sum()
    return total


class GroupLassoTask(Task):
    """Another task's loss plus the group-lasso penalty (Handbook eq. 4.2)."""

    def __init__(self, inner: Task, lambda_filter: float, lambda_channel: float = 0.0) -> None:
        super().__init__()
        self.inner, self.lambda_filter, self.lambda_channel = inner, lambda_filter, lambda_channel

    def training_step(self, model, x, y):
        loss, logits = self.inner.training_step(model, x, y)
        return loss + group_lasso_penalty(model, self.lambda_filter, self.lambda_channel), logits

    def after_step(self) -> None:
        self.inner.after_step()


def filter_norms(model: nn.Module) -> dict[str, list[float]]:
    return {n: m.weight.detach().flatten(1).norm(dim=1).tolist()
            for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}  # fmt: skip


@COMPRESSION.register("group_lasso")
def group_lasso(
    *, lambda_filter: float = 1e-3, lambda_channel: float = 0.0, epochs: int = 1
) -> Step:
    """Fine-tune with SSL's group-lasso penalty on filters/channels (structured sparsity)."""
    options = {
        "lambda_filter": float(check_positive("lambda_filter", lambda_filter)),
        "lambda_channel": float(lambda_channel),
        "epochs": check_int("epochs", epochs, 1),
    }
    if lambda_channel < 0:
        raise ValueError(f"lambda_channel must be >= 0, got {lambda_channel!r}")

    def apply(state: CompressState, ctx: Any) -> dict[str, Any]:
        inner = build_task(ctx.finetune_cfg, ctx.data, torch.device("cpu"))
        task = GroupLassoTask(inner, options["lambda_filter"], options["lambda_channel"])
        before = filter_norms(state.model)
        ctx.finetune(state, options["epochs"], task=task)
        after = filter_norms(state.model)
        small = {n: sum(v < 1e-2 * max(before[n]) for v in after[n]) for n in after}
        return {"filters_below_1pct_of_max_before": small}

    return Step("group_lasso", options, apply)
