"""LR range test (Smith 2017): reproducible, stops on divergence, sensible suggestion, no trace."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from cnnlab.engine.tasks import build_task
from cnnlab.optim.lr_finder import LRFindResult, lr_find, plot_lr_find, suggest_lr


def toy() -> tuple[nn.Module, list[tuple[torch.Tensor, torch.Tensor]]]:
    torch.manual_seed(0)
    x = torch.randn(512, 20)
    y = (x @ torch.randn(20, 3)).argmax(1)
    batches = [(x[i : i + 64], y[i : i + 64]) for i in range(0, 512, 64)]
    return nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 3)), batches


def sgd(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)


def run(**kwargs: object) -> tuple[nn.Module, LRFindResult]:
    model, batches = toy()
    task = build_task("cross_entropy", num_classes=3)
    return model, lr_find(model, task, sgd, batches, **kwargs)


def test_sweep_is_exponential_and_reproducible() -> None:
    _, a = run(steps=60, end=100.0)
    _, b = run(steps=60, end=100.0)
    assert a.losses == b.losses and a.suggestion == b.suggestion
    ratios = [a.lrs[i + 1] / a.lrs[i] for i in range(len(a.lrs) - 1)]
    step = (100.0 / 1e-7) ** (1 / 59)
    assert all(r == pytest.approx(step) for r in ratios)
    assert a.lrs[0] == pytest.approx(1e-7)


def test_stops_on_divergence_and_suggests_inside_the_range() -> None:
    _, r = run(steps=80, start=1e-5, end=1e4)
    assert r.diverged and len(r.lrs) < 80
    last = r.smoothed[-1]
    assert last > 4.0 * min(r.smoothed) or not math.isfinite(r.losses[-1])
    assert r.lrs[0] <= r.suggestion < r.lrs[-1]  # inside the sweep, below the divergence point
    assert r.suggestion <= r.lrs[r.smoothed.index(min(r.smoothed))]
    assert r.reason.startswith("steepest descent")
    # The smoothed loss really falls around the suggestion.
    i = r.lrs.index(r.suggestion)
    assert r.smoothed[min(i + 5, len(r.lrs) - 1)] < r.smoothed[max(i - 5, 0)]


def test_smoothing_is_bias_corrected() -> None:
    _, r = run(steps=10, smooth=0.9)
    avg = 0.0
    for i, (loss, s) in enumerate(zip(r.losses, r.smoothed, strict=True)):
        avg = 0.9 * avg + 0.1 * loss
        assert s == pytest.approx(avg / (1 - 0.9 ** (i + 1)))
    assert r.smoothed[0] == pytest.approx(r.losses[0])  # no pull towards 0 at the start


def test_weights_mode_and_rng_are_restored() -> None:
    model, batches = toy()
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    lr_find(model, build_task("cross_entropy", num_classes=3), sgd, batches, steps=30)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model.training
    assert torch.equal(torch.rand(3), expected_next)  # the caller's RNG stream is untouched


def test_task_state_is_restored() -> None:
    model, batches = toy()
    features = nn.Sequential(*list(model)[:2])
    model = nn.Module()
    model.forward_features = features  # type: ignore[assignment]
    model.head = nn.Linear(32, 3)
    task = build_task("center", num_classes=3, feat_dim=32)
    lr_find(model, task, sgd, batches, steps=20)
    assert torch.equal(task.centers, torch.zeros(3, 32))


def test_suggestion_fallback_and_bad_options() -> None:
    lr, reason = suggest_lr([1e-3, 1e-2, 1e-1], [1.0, 2.0, 3.0])
    assert lr == 1e-3 and reason.startswith("fallback")
    lrs = [10 ** (i / 10) for i in range(30)]
    lr, _ = suggest_lr(lrs, [1.0] * 5 + [1.0 - 0.1 * i for i in range(10)] + [5.0] * 15)
    assert lrs[5] <= lr <= lrs[14]
    with pytest.raises(ValueError, match="0 < start < end"):
        run(start=1.0, end=0.1)
    with pytest.raises(ValueError, match="diverge must be > 1"):
        run(diverge=1.0)
    with pytest.raises(ValueError, match="steps must be an integer >= 2"):
        run(steps=1)


def test_plot(tmp_path) -> None:
    _, r = run(steps=20)
    out = plot_lr_find(r, tmp_path / "figs" / "lr.png")
    assert out.read_bytes().startswith(b"\x89PNG")
