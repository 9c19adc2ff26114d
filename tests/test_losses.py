"""Chapter 9 losses against hand-worked values, torch built-ins and finite differences."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.engine.tasks import ClassificationTask, Task, build_task
from cnnlab.losses import (
    LOSSES,
    CrossEntropy,
    center_update_delta,
    chebyshev_cos_multiple,
    class_weights_from,
    cross_entropy,
    gaussian_label_distribution,
    large_margin_logits,
    large_margin_psi,
    tukey_biweight,
)
from cnnlab.losses.margin import center_loss_value

H = torch.tensor([[2.0, 1.0, -1.0]] * 3, dtype=torch.float64)  # the same scores, three labels
Y = torch.tensor([0, 1, 2])


def per_sample(name: str, logits: torch.Tensor, y: torch.Tensor, **opts: object) -> list[float]:
    loss = LOSSES.build(name, num_classes=logits.shape[1], **opts)
    return [loss(logits[i : i + 1], y[i : i + 1]).item() for i in range(len(y))]


def test_registered_and_old_api_kept() -> None:
    new = {"multiclass_hinge", "ramp", "l_softmax", "center", "l1", "l2", "tukey",
           "kl_label_distribution", "cross_entropy"}  # fmt: skip
    assert set(LOSSES.names()) >= new
    assert all(LOSSES.describe(n) for n in new)
    assert isinstance(cross_entropy(num_classes=3), CrossEntropy)
    assert class_weights_from(None, 3, None) is None


def test_hinge_forms_at_hand_worked_points() -> None:
    # h = (2, 1, -1), margin 1. Weston-Watkins: sum_{j != y} max(0, 1 + h_j - h_y).
    assert per_sample("multiclass_hinge", H, Y) == [0.0, 2.0, 7.0]  # y=2: (1+2+1) + (1+1+1)
    assert per_sample("multiclass_hinge", H, Y, form="crammer_singer") == [0.0, 2.0, 4.0]
    assert per_sample("multiclass_hinge", H, Y, form="book") == [0.0, 0.0, 2.0]  # max(0, 1-h_y)
    assert per_sample("multiclass_hinge", H, Y, margin=3.0) == [2.0, 5.0, 11.0]


def test_weston_watkins_matches_torch_multi_margin_times_c() -> None:
    torch.manual_seed(0)
    h, y = torch.randn(16, 5), torch.randint(0, 5, (16,))
    ww = LOSSES.build("multiclass_hinge", num_classes=5)(h, y)
    torch.testing.assert_close(ww, F.multi_margin_loss(h, y) * 5)  # torch divides by C


def test_ramp_default_s_and_truncation() -> None:
    loss = LOSSES.build("ramp", num_classes=3, form="book")
    assert loss.s == -0.5  # -1/(C-1) with C = 3: the handbook's figure (D.1)
    assert LOSSES.build("ramp", num_classes=11).s == pytest.approx(-0.1)
    h_y = torch.tensor([2.0, 1.0, 0.5, -0.5, -3.0, -100.0])
    logits = torch.stack([h_y, torch.zeros(6), torch.zeros(6)], dim=1)
    values = [loss(logits[i : i + 1], torch.tensor([0])).item() for i in range(6)]
    assert values == [0.0, 0.0, 0.5, 1.5, 1.5, 1.5]  # capped at 1 - s = 1.5 from h_y <= s on
    # = hinge - max(0, s - h_y) (eq. 9.4)
    hinge = (1 - h_y).clamp_min(0) - (-0.5 - h_y).clamp_min(0)
    assert values == hinge.tolist()
    # Beyond s the loss is flat: no gradient from grossly wrong samples.
    far = logits[4:5].clone().requires_grad_()
    loss(far, torch.tensor([0])).backward()
    assert far.grad.abs().sum().item() == 0.0
    # Default form: z = h_y - max_{j != y} h_j.
    cs = LOSSES.build("ramp", num_classes=3)
    assert per_sample("ramp", H, Y) == [0.0, 1.5, 1.5]  # z = 1, -1, -3: 1 - z = 0, 2, 4
    assert per_sample("ramp", H, Y, s=-2.0) == [0.0, 2.0, 3.0]
    assert cs(H, Y).item() == pytest.approx(1.0)


def test_chebyshev_and_psi() -> None:
    theta = torch.linspace(0, math.pi, 181, dtype=torch.float64)
    for m in range(1, 6):
        torch.testing.assert_close(chebyshev_cos_multiple(theta.cos(), m), torch.cos(m * theta))
        psi = large_margin_psi(theta.cos(), m)
        assert torch.all(psi[1:] <= psi[:-1] + 1e-12), m  # monotonically decreasing
        head = theta <= math.pi / m
        torch.testing.assert_close(psi[head], torch.cos(m * theta[head]))
    # m = 2 at 120 degrees: k = 1, psi = -cos(240 deg) - 2 = -1.5
    psi = large_margin_psi(torch.tensor([math.cos(2 * math.pi / 3)], dtype=torch.float64), 2)
    assert psi.item() == pytest.approx(-1.5)


def test_l_softmax_m1_equals_cross_entropy_exactly() -> None:
    torch.manual_seed(0)
    x, w, b = torch.randn(8, 6).double(), torch.randn(4, 6).double(), torch.randn(4).double()
    y = torch.randint(0, 4, (8,))
    margin, plain = large_margin_logits(x, w, b, y, m=1)
    torch.testing.assert_close(plain, x @ w.t() + b)
    torch.testing.assert_close(
        F.cross_entropy(margin, y), F.cross_entropy(x @ w.t() + b, y), rtol=1e-12, atol=1e-12
    )


def test_l_softmax_m2_at_hand_computed_angles() -> None:
    w = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    y = torch.tensor([0])
    # |x| = 2 at 60 degrees from W_0: psi = cos(120 deg) = -0.5, target logit 1*2*(-0.5) = -1.
    x = torch.tensor([[1.0, math.sqrt(3)]], dtype=torch.float64)
    margin, plain = large_margin_logits(x, w, None, y, m=2)
    torch.testing.assert_close(margin, torch.tensor([[-1.0, math.sqrt(3)]], dtype=torch.float64))
    expected = -math.log(math.exp(-1) / (math.exp(-1) + math.exp(math.sqrt(3))))
    assert F.cross_entropy(margin, y).item() == pytest.approx(expected)
    assert plain[0, 0].item() == pytest.approx(1.0)  # the plain logit W_0 . x
    # 120 degrees: k = 1, psi = -1.5, target logit -3; annealing lam blends with cos: -1.
    x = torch.tensor([[-1.0, math.sqrt(3)]], dtype=torch.float64)
    assert large_margin_logits(x, w, None, y, m=2)[0][0, 0].item() == pytest.approx(-3.0)
    lam = large_margin_logits(x, w, None, y, m=2, lam=1.0)[0][0, 0].item()
    assert lam == pytest.approx((1.0 * -1.0 + -3.0) / 2)


def test_center_update_against_hand_computation() -> None:
    centers = torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]])
    feats = torch.tensor([[1.0, 0.0], [3.0, 1.0], [1.0, 1.0]])
    y = torch.tensor([0, 1, 0])
    delta = center_update_delta(centers, feats, y)
    # class 0: ((0-1)+(0-1), (0-0)+(0-1)) / (1+2); class 1: (1-3, 1-1) / (1+1); class 2: none.
    expected = torch.tensor([[-2 / 3, -1 / 3], [-1.0, 0.0], [0.0, 0.0]])
    torch.testing.assert_close(delta, expected)
    # 1/2 * mean ||x_i - c_{y_i}||^2 = 1/2 * (1 + 4 + 2) / 3
    assert center_loss_value(feats, centers, y, "mean").item() == pytest.approx(7 / 6)
    assert center_loss_value(feats, centers, y, "sum").item() == pytest.approx(3.5)


def test_kl_equals_soft_cross_entropy_minus_target_entropy() -> None:
    torch.manual_seed(0)
    h, y = torch.randn(10, 7, dtype=torch.float64), torch.randint(0, 7, (10,))
    for opts in ({}, {"sigma": 2.5}, {"target": "smoothing", "smoothing": 0.2}):
        loss = LOSSES.build("kl_label_distribution", num_classes=7, **opts)
        q = loss.table[y].double()
        soft_ce = -(q * F.log_softmax(h, 1)).sum(1).mean()
        entropy = -(q * q.log()).sum(1).mean()
        torch.testing.assert_close(loss(h, y), soft_ce - entropy)  # eq. 9.19 vs 9.20 (D.1)
        ref = F.kl_div(F.log_softmax(h, 1), q, reduction="batchmean")
        torch.testing.assert_close(loss(h, y), ref)
    smooth = LOSSES.build("kl_label_distribution", num_classes=4, target="smoothing")
    torch.testing.assert_close(smooth.table[1], torch.tensor([0.025, 0.925, 0.025, 0.025]))


def test_gaussian_label_distribution_shape() -> None:
    table = gaussian_label_distribution(9, sigma=1.0)
    torch.testing.assert_close(table.sum(1), torch.ones(9))
    assert table.argmax(1).tolist() == list(range(9))
    row = table[4]
    torch.testing.assert_close(row, row.flip(0))  # symmetric around the label
    ratio = (row[5] / row[4]).item()
    assert ratio == pytest.approx(math.exp(-0.5), rel=1e-5)  # exp(-1/(2 sigma^2))


def test_l1_l2_against_torch() -> None:
    torch.manual_seed(0)
    h, y = torch.randn(6, 4), torch.randint(0, 4, (6,))
    p, t = h.softmax(1), F.one_hot(y, 4).float()
    l1 = LOSSES.build("l1", num_classes=4)
    torch.testing.assert_close(l1(h, y), F.l1_loss(p, t, reduction="sum") / 6)
    l2 = LOSSES.build("l2", num_classes=4)
    torch.testing.assert_close(l2(h, y), F.mse_loss(p, t, reduction="sum") / 6)
    half = LOSSES.build("l2", num_classes=4, half=True, reduction="sum")
    torch.testing.assert_close(half(h, y), F.mse_loss(p, t, reduction="sum") / 2)


def test_tukey_at_and_beyond_c() -> None:
    c = 4.6851
    r = torch.tensor([0.0, c / 2, c, 1.5 * c, -10 * c], dtype=torch.float64, requires_grad=True)
    rho = tukey_biweight(r, c)
    top = c * c / 6
    expected = [0.0, top * (1 - (3 / 4) ** 3), top, top, top]  # constant from |r| = c on (D.1)
    assert rho.tolist() == pytest.approx(expected)
    rho.sum().backward()
    assert r.grad[3:].abs().sum().item() == 0.0 and r.grad[1].item() > 0
    small = torch.tensor([1e-3], dtype=torch.float64)
    assert tukey_biweight(small, c).item() == pytest.approx(0.5e-6, rel=1e-4)  # ~ r^2 / 2


def test_tukey_mad_scaling_ignores_grossly_wrong_samples() -> None:
    torch.manual_seed(0)
    y = torch.arange(4).repeat(4)  # 16 samples, 4 classes
    logits = 6.0 * F.one_hot(y, 4).float() + 0.1 * torch.randn(16, 4)  # confident and right
    logits[0] = torch.tensor([0.0, 3.0, 0.0, 0.0])  # label 0, predicted 1 (p = 0.87): outlier
    logits.requires_grad_()
    LOSSES.build("tukey", num_classes=4, mad_scale=True, min_scale=0.005)(logits, y).backward()
    pull = logits.grad.abs().amax(dim=1)
    # Saturated: the outlier's pull is negligible next to every correctly labelled sample's.
    assert pull[0].item() < 1e-3 * pull[1:].min().item()
    plain = logits.detach().clone().requires_grad_()
    LOSSES.build("tukey", num_classes=4)(plain, y).backward()
    # Unscaled: |r| <= 1 < c, never flat, and the outlier pulls hardest of all.
    assert plain.grad[0].abs().max() > 100 * plain.grad[1:].abs().max()


# Every loss with a hand-written forward, as a function of float64 logits (gradcheck).
GRADCHECK = [
    ("multiclass_hinge", {}),
    ("multiclass_hinge", {"form": "crammer_singer"}),
    ("multiclass_hinge", {"form": "book"}),
    ("ramp", {}),
    ("ramp", {"form": "book"}),
    ("l1", {}),
    ("l2", {"half": True}),
    ("tukey", {"c": 0.5}),
    ("tukey", {"mad_scale": True, "min_scale": 10.0}),  # the scale is a constant (no grad)
    ("kl_label_distribution", {}),
]


@pytest.mark.parametrize(("name", "opts"), GRADCHECK)
def test_gradcheck_losses(name: str, opts: dict) -> None:
    torch.manual_seed(1)
    h = (torch.randn(5, 4, dtype=torch.float64) * 2).requires_grad_()
    y = torch.randint(0, 4, (5,))
    loss = LOSSES.build(name, num_classes=4, **opts)
    assert torch.autograd.gradcheck(lambda z: loss(z, y), (h,))


@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_gradcheck_l_softmax_and_center(m: int) -> None:
    torch.manual_seed(m)
    x = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 3, (6,))

    def fn(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(large_margin_logits(x, w, b, y, m, lam=0.5)[0], y)

    assert torch.autograd.gradcheck(fn, (x, w, b))
    c = torch.randn(3, 5, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda f: center_loss_value(f, c, y, "mean"), (x,))


@pytest.mark.parametrize(
    ("name", "opts", "pattern"),
    [
        ("l_softmax", {"m": 0}, r"l_softmax: m must be an integer >= 1"),
        ("l_softmax", {"m": 1.5}, r"l_softmax: m must be an integer >= 1"),
        ("l_softmax", {"lambda_base": -1.0}, r"l_softmax: lambda_base must be in \[0, inf\]"),
        ("center", {"lam": -0.1}, r"center: lam must be in \[0, inf\]"),
        ("center", {"alpha": 1.5}, r"center: alpha must be in \[0, 1\]"),
        ("center", {"feat_dim": 0}, r"center: feat_dim must be a positive integer"),
        ("center", {"reduction": "avg"}, r"center: reduction must be one of 'mean', 'sum'"),
        ("kl_label_distribution", {"sigma": 0.0}, r"sigma must be in \(0, inf\]"),
        ("kl_label_distribution", {"smoothing": 1.0}, r"smoothing must be in \[0, 1\)"),
        ("kl_label_distribution", {"target": "uniform"}, r"target must be one of"),
        ("ramp", {"s": 1.0}, r"ramp: s must be in \[-inf, 1\)"),
        ("multiclass_hinge", {"margin": 0.0}, r"margin must be in \(0, inf\]"),
        ("multiclass_hinge", {"form": "ovr"}, r"form must be one of 'weston_watkins'"),
        ("tukey", {"c": -1.0}, r"tukey: c must be in \(0, inf\]"),
        ("l2", {"reduction": "none"}, r"l2: reduction must be one of 'mean', 'sum'"),
    ],
)
def test_bad_options_name_option_and_range(name: str, opts: dict, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        LOSSES.build(name, num_classes=4, **opts)


def test_losses_need_two_classes() -> None:
    with pytest.raises(ValueError, match=r"ramp: num_classes must be an integer >= 2"):
        LOSSES.build("ramp", num_classes=1)


class Tiny(nn.Module):
    """forward = head(forward_features(x)) like the zoo models."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU())
        self.head = nn.Linear(8, 3)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


@pytest.mark.parametrize("name", LOSSES.names())
def test_every_loss_trains_one_step(name: str) -> None:
    torch.manual_seed(0)
    model, task = Tiny(), build_task(name, num_classes=3)
    assert isinstance(task, Task)
    if name not in ("l_softmax", "center"):
        assert isinstance(task, ClassificationTask)
    x, y = torch.randn(12, 1, 4, 4), torch.arange(12) % 3
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    loss, logits = task.training_step(model, x, y)
    assert loss.dim() == 0 and torch.isfinite(loss)
    torch.testing.assert_close(logits, model(x))  # the plain logits, for accuracy
    opt.zero_grad()
    loss.backward()
    opt.step()
    task.after_step()
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
