"""Tasks for losses that need features or the classifier: L-Softmax and center loss (§9.1.4-5)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.engine.tasks import (
    CenterLossTask,
    ClassificationTask,
    LargeMarginSoftmaxTask,
    build_task,
)


class FixedFeatures(nn.Module):
    """A 'model' whose features are a given tensor (times a learnable scale) and a linear head."""

    def __init__(self, feats: torch.Tensor, num_classes: int = 3) -> None:
        super().__init__()
        self.feats = feats
        self.scale = nn.Parameter(torch.ones(()))
        self.head = nn.Linear(feats.shape[1], num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.feats * self.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


FEATS = torch.tensor([[1.0, 0.0], [3.0, 1.0], [1.0, 1.0]])
Y = torch.tensor([0, 1, 0])


def test_build_task_wraps_plain_losses_and_returns_feature_tasks() -> None:
    assert isinstance(build_task("cross_entropy", num_classes=3), ClassificationTask)
    assert isinstance(build_task("ramp", num_classes=3, s=-1.0), ClassificationTask)
    assert isinstance(build_task("l_softmax", num_classes=3, m=3), LargeMarginSoftmaxTask)
    assert isinstance(build_task("center", num_classes=3), CenterLossTask)
    with pytest.raises(KeyError, match="has no option 'q'"):
        build_task("center", num_classes=3, q=1)


def test_center_task_loss_and_update_by_hand() -> None:
    torch.manual_seed(0)
    model = FixedFeatures(FEATS)
    task = build_task("center", num_classes=3, lam=0.2, alpha=0.5)
    assert task.centers.shape == (3, 0)  # sized on the first batch
    loss, logits = task.training_step(model, torch.zeros(3, 1), Y)
    ce = F.cross_entropy(model.head(FEATS), Y)
    # centres start at 0: 1/2 * mean ||x_i||^2 = 1/2 * (1 + 10 + 2) / 3
    torch.testing.assert_close(loss, ce + 0.2 * 13 / 6)
    torch.testing.assert_close(logits, model(FEATS))
    task.after_step()
    # Delta c_0 = ((0-1) + (0-1), (0-0) + (0-1)) / 3; Delta c_1 = (0-3, 0-1) / 2; c_2 untouched.
    expected = -0.5 * torch.tensor([[-2 / 3, -1 / 3], [-1.5, -0.5], [0.0, 0.0]])
    torch.testing.assert_close(task.centers, expected)
    task.after_step()  # nothing pending: no second update
    torch.testing.assert_close(task.centers, expected)


def test_centres_converge_to_the_class_means() -> None:
    model, task = FixedFeatures(FEATS), build_task("center", num_classes=3, feat_dim=2)
    for _ in range(60):
        task.training_step(model, torch.zeros(3, 1), Y)
        task.after_step()
    torch.testing.assert_close(task.centers[:2], torch.tensor([[1.0, 0.5], [3.0, 1.0]]))
    assert torch.equal(task.centers[2], torch.zeros(2))  # never seen: stays at its start


def test_center_task_eval_mode_does_not_update_and_state_round_trips() -> None:
    model, task = FixedFeatures(FEATS), build_task("center", num_classes=3)
    task.training_step(model, torch.zeros(3, 1), Y)
    task.after_step()
    state = task.state_dict()
    fresh = build_task("center", num_classes=3)  # lazily sized: takes the checkpoint's shape
    fresh.load_state_dict(state)
    torch.testing.assert_close(fresh.centers, task.centers)
    fresh.eval()
    fresh.training_step(model, torch.zeros(3, 1), Y)
    fresh.after_step()
    torch.testing.assert_close(fresh.centers, task.centers)
    wrong = build_task("center", num_classes=3, feat_dim=5)
    with pytest.raises(
        ValueError, match="centres have 5 dimensions but the model's features have 2"
    ):
        wrong.training_step(model, torch.zeros(3, 1), Y)


def test_center_loss_pulls_features_towards_their_centres() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 4))
    model = nn.Module()
    model.forward_features = net  # type: ignore[assignment]
    model.head = nn.Linear(4, 3)
    x, y = torch.randn(30, 6), torch.arange(30) % 3

    def spread(task: CenterLossTask) -> float:
        f = net(x).detach()
        means = torch.stack([f[y == k].mean(0) for k in range(3)])
        return (f - means[y]).pow(2).sum(1).mean().item()

    task = build_task("center", num_classes=3, lam=1.0, alpha=0.5)
    opt = torch.optim.SGD([*net.parameters(), *model.head.parameters()], lr=0.05)
    start = None
    for _ in range(40):
        loss, _ = task.training_step(model, x, y)
        start = spread(task) if start is None else start
        opt.zero_grad()
        loss.backward()
        opt.step()
        task.after_step()
    assert spread(task) < 0.5 * start  # intra-class variation shrinks (Handbook §9.1.5)


def test_l_softmax_task_m1_is_cross_entropy_and_lambda_anneals() -> None:
    torch.manual_seed(0)
    model = FixedFeatures(torch.randn(3, 2).double()).double()
    task = build_task("l_softmax", num_classes=3, m=1)
    loss, logits = task.training_step(model, torch.zeros(3, 1), Y)
    torch.testing.assert_close(loss, F.cross_entropy(model(None), Y))
    torch.testing.assert_close(logits, model(None))
    sched = build_task(
        "l_softmax", num_classes=3, lambda_base=100.0, lambda_gamma=1.0, lambda_power=1.0,
        lambda_min=5.0,
    )  # fmt: skip
    assert sched.current_lambda() == 100.0
    for _ in range(3):
        sched.after_step()
    assert sched.current_lambda() == pytest.approx(25.0)  # 100 / (1 + 3)
    for _ in range(100):
        sched.after_step()
    assert sched.current_lambda() == 5.0  # floor
    assert int(sched.state_dict()["iteration"]) == 103
    assert build_task("l_softmax", num_classes=3).current_lambda() == 0.0  # no annealing


def test_l_softmax_margin_makes_the_loss_larger() -> None:
    torch.manual_seed(0)
    model = FixedFeatures(torch.randn(6, 2))
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    losses = [
        build_task("l_softmax", num_classes=3, m=m).training_step(model, None, y)[0].item()
        for m in (1, 2, 3, 4)
    ]
    assert losses == sorted(losses)  # psi(theta) <= cos(theta): a harder target (eq. 9.7)


def test_feature_tasks_need_features_and_a_linear_head() -> None:
    plain = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    x, y = torch.randn(2, 1, 2, 2), torch.tensor([0, 1])
    with pytest.raises(TypeError, match=r"center needs the deep feature .* has neither"):
        build_task("center", num_classes=3).training_step(plain, x, y)
    with pytest.raises(TypeError, match=r"l_softmax needs .* nn\.Linear.*head is NoneType"):
        build_task("l_softmax", num_classes=3).training_step(plain, x, y)
    model = FixedFeatures(torch.randn(2, 4))
    model.head = nn.Sequential(nn.Linear(4, 3))
    with pytest.raises(TypeError, match="l_softmax needs a model whose `head` is an nn.Linear"):
        build_task("l_softmax", num_classes=3).training_step(model, x, y)


@pytest.mark.parametrize("name", ["l_softmax", "center"])
def test_zoo_models_give_features_through_forward(name: str) -> None:
    """Zoo models answer model(x, return_features=True): the tasks use that single call."""
    from cnnlab.models import create_model

    torch.manual_seed(0)
    model = create_model("cnn2", num_classes=4, in_chans=1, input_size=12)
    calls = []
    model.register_forward_hook(lambda m, args, kwargs, out: calls.append(kwargs), with_kwargs=True)
    x, y = torch.randn(6, 1, 12, 12), torch.arange(6) % 4
    loss, logits = build_task(name, num_classes=4).training_step(model, x, y)
    assert calls == [{"return_features": True}]
    assert logits.shape == (6, 4)
    loss.backward()
    assert model.head.weight.grad is not None and model.features[0].weight.grad is not None
