"""Knowledge distillation loss and task (Handbook §4.5; Part E item 25)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.compression.distillation import DistillationTask, distillation_loss, student_spec
from cnnlab.compression.state import CompressionError


def _logits():
    gen = torch.Generator().manual_seed(0)
    return (torch.randn(6, 5, generator=gen), torch.randn(6, 5, generator=gen) * 3,
            torch.randint(0, 5, (6,), generator=gen))  # fmt: skip


def test_t1_alpha0_is_cross_entropy():
    s, t, y = _logits()
    assert float(distillation_loss(s, t, y, 1.0, 0.0)) == pytest.approx(
        float(F.cross_entropy(s, y)), rel=1e-6
    )


@pytest.mark.parametrize(("temp", "alpha"), [(1.0, 1.0), (4.0, 0.7), (20.0, 0.3)])
def test_hand_formula(temp, alpha):
    s, t, y = _logits()
    p = torch.softmax(t.double() / temp, dim=1)  # teacher's soft labels
    q = torch.softmax(s.double() / temp, dim=1)
    kl = (p * (p.log() - q.log())).sum(dim=1).mean()
    ce = -torch.log_softmax(s.double(), dim=1)[torch.arange(6), y].mean()
    expected = alpha * temp**2 * kl + (1 - alpha) * ce
    assert float(distillation_loss(s, t, y, temp, alpha)) == pytest.approx(float(expected),
                                                                           rel=1e-5)  # fmt: skip


def test_higher_temperature_gives_smoother_soft_labels():
    _, t, _ = _logits()
    entropy = [float(-(torch.softmax(t / T, 1) * torch.log_softmax(t / T, 1)).sum(1).mean())
               for T in (1, 2, 4, 8, 20)]  # fmt: skip
    assert entropy == sorted(entropy)


class _LogProbTeacher(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x):
        return torch.log_softmax(self.net(x), dim=1)


def test_task_accepts_logit_or_log_prob_teachers_and_keeps_teacher_frozen():
    torch.manual_seed(0)
    teacher, student = nn.Linear(4, 3), nn.Linear(4, 3)
    x, y = torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1])
    a = DistillationTask(teacher, 3.0, 0.5).train()
    b = DistillationTask(_LogProbTeacher(teacher), 3.0, 0.5).train()
    loss_a, logits = a.training_step(student, x, y)
    loss_b, _ = b.training_step(student, x, y)
    assert loss_a.item() == pytest.approx(loss_b.item(), rel=1e-5)
    assert not a.teacher.training and torch.equal(logits, student(x))
    loss_a.backward()
    assert teacher.weight.grad is None and student.weight.grad is not None


def test_default_student_is_half_width_or_a_clear_error():
    spec = {"name": "resnet20", "params": {"width": 0.5}, "num_classes": 10, "in_chans": 1,
            "input_size": 28}  # fmt: skip
    assert student_spec(spec, None)["params"] == {"width": 0.25}
    assert student_spec(spec, {"name": "cnn1"})["name"] == "cnn1"
    with pytest.raises(CompressionError, match="no width option"):
        student_spec({**spec, "name": "vgg_small", "params": {}}, None)
