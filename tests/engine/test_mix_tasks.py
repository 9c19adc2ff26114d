"""Mixup and CutMix tasks: the mixed inputs and mixed loss, determinism and exact resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnlab.engine.mix_tasks import MIX_TASKS, CutMixTask, MixupTask, cutmix_box
from cnnlab.engine.tasks import Task


class Recorder(nn.Module):
    """A linear classifier that remembers the batch it was given."""

    def __init__(self, d: int = 3 * 6 * 6, k: int = 4) -> None:
        super().__init__()
        self.fc = nn.Linear(d, k)
        self.seen: torch.Tensor | None = None

    def forward(self, x):
        self.seen = x.detach().clone()
        return self.fc(x.flatten(1))


def data(b=8, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(b, 3, 6, 6, generator=gen), torch.randint(0, 4, (b,), generator=gen)


def replay(seed: int, step: int, batch: int, alpha: float = 1.0):
    """The draws of a step, computed independently of the task: (lam, perm, rng)."""
    rng = np.random.default_rng([seed, step])
    rng.random()  # the apply-or-not draw
    perm = torch.from_numpy(rng.permutation(batch))
    return rng.beta(alpha, alpha), perm, rng


def test_mixup_mixes_inputs_and_losses():
    model, (x, y) = Recorder(), data()
    task = MixupTask(nn.CrossEntropyLoss(), alpha=0.4, seed=11)
    assert isinstance(task, Task)
    loss, logits = task.training_step(model, x, y)
    lam, perm, _ = replay(11, 0, 8, alpha=0.4)
    torch.testing.assert_close(model.seen, lam * x + (1 - lam) * x[perm])
    want = lam * F.cross_entropy(logits, y) + (1 - lam) * F.cross_entropy(logits, y[perm])
    torch.testing.assert_close(loss, want)
    loss.backward()
    assert model.fc.weight.grad is not None and int(task.step) == 1


def test_cutmix_pastes_a_box_and_weights_by_its_area():
    model, (x, y) = Recorder(), data()
    task = CutMixTask(nn.CrossEntropyLoss(), alpha=1.0, seed=5)
    loss, logits = task.training_step(model, x, y)
    lam, perm, rng = replay(5, 0, 8)
    top, bottom, left, right = cutmix_box(6, 6, lam, rng)
    inside = torch.zeros(6, 6, dtype=torch.bool)
    inside[top:bottom, left:right] = True
    torch.testing.assert_close(model.seen, torch.where(inside, x[perm], x))
    kept = 1 - inside.float().mean()
    want = kept * F.cross_entropy(logits, y) + (1 - kept) * F.cross_entropy(logits, y[perm])
    torch.testing.assert_close(loss, want)


def test_cutmix_box_area_and_clipping():
    rng = np.random.default_rng(0)
    for lam in (0.1, 0.5, 0.9):
        areas = []
        for _ in range(200):
            top, bottom, left, right = cutmix_box(32, 32, lam, rng)
            assert 0 <= top <= bottom <= 32 and 0 <= left <= right <= 32
            areas.append((bottom - top) * (right - left) / 1024)
        assert max(areas) <= 1 - lam + 0.02  # at most the requested share (+ rounding)
        assert max(areas) >= 1 - lam - 0.1  # reached when the box is not clipped


def test_same_seed_same_steps_and_resume_from_state_dict():
    (x, y), model = data(), Recorder()
    a = MixupTask(nn.CrossEntropyLoss(), seed=3)
    first = [a.training_step(model, x, y)[0] for _ in range(3)]
    b = MixupTask(nn.CrossEntropyLoss(), seed=3)
    b.training_step(model, x, y)
    resumed = MixupTask(nn.CrossEntropyLoss(), seed=999)
    resumed.load_state_dict(b.state_dict())  # seed and step travel with the checkpoint
    assert int(resumed.seed) == 3 and int(resumed.step) == 1
    torch.testing.assert_close(resumed.training_step(model, x, y)[0], first[1])
    assert not torch.allclose(first[0], first[1])  # steps draw differently
    again = MixupTask(nn.CrossEntropyLoss(), seed=3)
    again.set_step(2)  # resume from the trainer's step count alone
    torch.testing.assert_close(again.training_step(model, x, y)[0], first[2])


def test_seed_comes_from_the_global_rng():
    torch.manual_seed(123)
    s1 = int(CutMixTask(nn.CrossEntropyLoss()).seed)
    torch.manual_seed(123)
    s2 = int(CutMixTask(nn.CrossEntropyLoss()).seed)
    assert s1 == s2 and int(CutMixTask(nn.CrossEntropyLoss()).seed) != s1


@pytest.mark.parametrize("name", sorted(MIX_TASKS))
def test_p_zero_is_plain_classification_and_bad_options(name):
    model, (x, y) = Recorder(), data()
    task = MIX_TASKS[name](nn.CrossEntropyLoss(), p=0.0, seed=1)
    loss, logits = task.training_step(model, x, y)
    assert torch.equal(model.seen, x)
    torch.testing.assert_close(loss, F.cross_entropy(logits, y))
    with pytest.raises(ValueError, match="alpha must be a number > 0"):
        MIX_TASKS[name](nn.CrossEntropyLoss(), alpha=0)
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\]"):
        MIX_TASKS[name](nn.CrossEntropyLoss(), p=1.5)


def test_a_few_steps_of_training_reduce_the_mixed_loss():
    torch.manual_seed(0)
    x, y = data(b=64, seed=2)
    x = x + 2.0 * F.one_hot(y, 4).float().repeat_interleave(27, 1).view(64, 3, 6, 6)
    model = Recorder()
    task = MixupTask(nn.CrossEntropyLoss(), alpha=0.2, seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    for _ in range(30):
        loss, _ = task.training_step(model, x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert np.mean(losses[-5:]) < np.mean(losses[:5])


def test_host_counters_follow_a_loaded_state_dict():
    # MixTask keeps (seed, step) on the host so a GPU run never reads its buffers per step;
    # after load_state_dict (a resume) it must draw what the saved task would draw next.
    a = MixupTask(torch.nn.CrossEntropyLoss(), seed=5)
    for _ in range(3):
        a.draws(8)
    b = MixupTask(torch.nn.CrossEntropyLoss(), seed=1)
    b.draws(8)  # b's host copy now holds its own counters
    b.load_state_dict(a.state_dict())
    lam_a, perm_a, _ = a.draws(8)
    lam_b, perm_b, _ = b.draws(8)
    assert lam_a == lam_b and torch.equal(perm_a, perm_b) and int(b.step) == 4
    b.set_step(1)
    c = MixupTask(torch.nn.CrossEntropyLoss(), seed=5)
    c.draws(8)
    assert b.draws(8)[0] == c.draws(8)[0]
