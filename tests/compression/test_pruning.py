"""Magnitude pruning and group lasso (Handbook §4.2)."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from cnnlab.compression.pruning import (
    GroupLassoTask,
    group_lasso_penalty,
    magnitude_prune,
    sparsity_schedule,
)
from cnnlab.compression.state import CompressState, weight_modules
from cnnlab.engine.tasks import ClassificationTask


def test_schedule_ends_exactly_at_the_target():
    sched = sparsity_schedule(0.8, 3)
    assert sched[-1] == pytest.approx(0.8)
    # the same fraction of the remaining weights each iteration
    remaining = [1 - s for s in [0.0, *sched]]
    ratios = [b / a for a, b in itertools.pairwise(remaining)]
    assert ratios == pytest.approx([ratios[0]] * 3)


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_pruned_model_has_exactly_the_reported_sparsity(scope, make_model, fake_ctx):
    model, spec = make_model("cnn2", size=12)
    state = CompressState(model, spec)
    x = torch.randn(3, 1, 12, 12)
    details = magnitude_prune(state, fake_ctx, sparsity=0.7, iterations=3, finetune_epochs=1,
                              scope=scope)  # fmt: skip
    named = weight_modules(state.model)
    zeros = sum(int((m.weight == 0).sum()) for _, m in named)
    total = sum(m.weight.numel() for _, m in named)
    assert details["zeros"] == zeros and details["sparsity"] == zeros / total
    if scope == "global":
        assert zeros == round(0.7 * total)
    else:
        assert all(int((m.weight == 0).sum()) == round(0.7 * m.weight.numel()) for _, m in named)
    assert fake_ctx.finetune_calls == [1, 1, 1]
    assert not any(hasattr(m, "weight_mask") for _, m in named)  # made permanent
    assert torch.isfinite(state.model(x)).all()
    assert all(state.encodings[f"{n}.weight"]["kind"] == "sparse" for n, _ in named)


def test_global_pruning_removes_the_smallest_weights(make_model, fake_ctx):
    model, spec = make_model("softmax", size=4)
    before = model.head.weight.detach().abs().clone()
    state = CompressState(model, spec)
    magnitude_prune(state, fake_ctx, sparsity=0.5, iterations=1, finetune_epochs=0)
    w = state.model.head.weight.detach()
    kept = before[w != 0]
    removed = before[w == 0]
    assert kept.min() >= removed.max()


def test_threshold_rule_prunes_below_a_multiple_of_the_std(make_model, fake_ctx):
    model, spec = make_model("softmax", size=4)
    w0 = weight_modules(model)[0][1].weight.detach().clone()
    state = CompressState(model, spec)
    magnitude_prune(state, fake_ctx, sparsity=0.5, iterations=1, finetune_epochs=0,
                    threshold=0.5)  # fmt: skip
    w = weight_modules(state.model)[0][1].weight.detach()
    assert torch.equal(w == 0, w0.abs() < 0.5 * w0.std())


def test_group_lasso_penalty_by_hand():
    conv = nn.Conv2d(2, 3, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[3.0, 4.0], [0.0, 0.0], [1.0, 0.0]]).view(3, 2, 1, 1))
    model = nn.Sequential(conv).requires_grad_(False)
    # filters: ||(3,4)|| + ||(0,0)|| + ||(1,0)|| = 5 + 0 + 1; channels: ||(3,0,1)|| + ||(4,0,0)||
    filt = group_lasso_penalty(model, 1.0, 0.0)
    chan = group_lasso_penalty(model, 0.0, 1.0)
    assert float(filt) == pytest.approx(6.0, abs=1e-5)
    assert float(chan) == pytest.approx(10**0.5 + 4.0, abs=1e-5)
    both = group_lasso_penalty(model, 0.1, 0.01)
    assert float(both) == pytest.approx(0.6 + 0.01 * (10**0.5 + 4.0), abs=1e-5)


def test_group_lasso_task_adds_the_penalty(make_model):
    model, _ = make_model("cnn1", size=8)
    x, y = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    inner = ClassificationTask(nn.CrossEntropyLoss())
    base, _ = inner.training_step(model, x, y)
    loss, _ = GroupLassoTask(inner, 0.01).training_step(model, x, y)
    expected = (base + group_lasso_penalty(model, 0.01)).item()
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()  # differentiable, also for an all-zero filter (eps inside the root)
    assert model.conv.weight.grad is not None and torch.isfinite(model.conv.weight.grad).all()
