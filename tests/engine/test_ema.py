"""EMA of the weights against a hand-computed average, and the trainer's eval hook."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnlab.engine.ema import EMA
from cnnlab.engine.state import TrainState


def tiny_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))


def train_steps(model: nn.Module, ema: EMA, steps: int) -> list[dict[str, torch.Tensor]]:
    """SGD steps with an update after each (as the trainer's on_step_end does); the live
    state after every step."""
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    state, seen = TrainState(), []
    for _ in range(steps):
        x = torch.randn(8, 3)
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        state.step += 1
        ema.on_step_end(None, state)
        seen.append({k: v.detach().clone() for k, v in model.state_dict().items()})
    return seen


def hand_average(seen: list[dict[str, torch.Tensor]], decays: list[float], key: str):
    """w_1 copied, then w <- d_n * w + (1 - d_n) * w_new for the n-th later update."""
    avg = seen[0][key].double()
    for n, state in enumerate(seen[1:], start=1):
        avg = decays[n - 1] * avg + (1 - decays[n - 1]) * state[key].double()
    return avg


@pytest.mark.parametrize("warmup", [True, False])
def test_average_matches_the_hand_computed_ema(warmup: bool) -> None:
    model = tiny_net()
    ema = EMA(model, decay=0.9, warmup=warmup)
    seen = train_steps(model, ema, 6)
    decays = [min(0.9, (1 + n) / (10 + n)) if warmup else 0.9 for n in range(1, 6)]
    assert ema.decay_at(1) == pytest.approx(decays[0])
    assert ema.updates == 6
    averaged = ema.module.state_dict()
    # Parameters and (bn="average") the batch-norm running statistics alike.
    for key in ("0.weight", "3.bias", "1.running_mean", "1.running_var"):
        torch.testing.assert_close(averaged[key].double(), hand_average(seen, decays, key))
    assert not torch.equal(averaged["0.weight"], model.state_dict()["0.weight"])


def test_every_k_steps_and_copied_buffers() -> None:
    model = tiny_net()
    ema = EMA(model, decay=0.5, every=2, warmup=False, bn="copy")
    seen = train_steps(model, ema, 6)
    assert ema.updates == 3
    used = [seen[1], seen[3], seen[5]]  # after steps 2, 4, 6
    averaged = ema.module.state_dict()
    torch.testing.assert_close(
        averaged["0.weight"].double(), hand_average(used, [0.5, 0.5], "0.weight")
    )
    # bn="copy": the running statistics are the live model's, not averaged.
    torch.testing.assert_close(averaged["1.running_mean"], seen[5]["1.running_mean"])


def test_state_dict_round_trip_and_lazy_binding() -> None:
    model = tiny_net()
    ema = EMA(model, decay=0.8)
    train_steps(model, ema, 3)
    fresh = EMA(tiny_net(), decay=0.8)
    fresh.load_state_dict(ema.state_dict())
    assert fresh.updates == 3
    for a, b in zip(
        fresh.module.state_dict().values(), ema.module.state_dict().values(), strict=False
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    lazy = EMA(decay=0.8)
    with pytest.raises(RuntimeError, match="no model yet"):
        lazy.state_dict()

    class FakeTrainer:
        pass

    trainer = FakeTrainer()
    trainer.model = model  # type: ignore[attr-defined]
    lazy.on_fit_start(trainer, TrainState())
    assert lazy.eval_model(trainer, model) is None  # nothing averaged yet: the live model
    lazy.update()
    assert lazy.eval_model(trainer, model) is lazy.module


def test_trainer_evaluates_the_averaged_model() -> None:
    from cnnlab.data.loader import BatchLoader, Normalizer
    from cnnlab.engine.runtime import Runtime
    from cnnlab.engine.tasks import build_task
    from cnnlab.engine.trainer import Trainer

    torch.manual_seed(0)
    images = torch.randint(0, 255, (40, 1, 6, 6), dtype=torch.uint8)
    labels = torch.randint(0, 3, (40,))
    loader = BatchLoader(images, labels, batch_size=10, normalizer=Normalizer.identity(1),
                         shuffle=True)  # fmt: skip
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 3))
    ema = EMA(model, decay=0.9)
    evaluated = []

    def evaluate(m: nn.Module) -> dict[str, float]:
        evaluated.append(m)
        return {}

    runtime = Runtime(device=torch.device("cpu"), amp_dtype=None, channels_last=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0)
    task = build_task("cross_entropy", num_classes=3)
    Trainer(epochs=2, runtime=runtime, callbacks=[ema]).fit(
        model, task, opt, sched, loader, evaluate
    )
    assert evaluated == [ema.module, ema.module] and ema.updates == 8


def test_bad_options_name_the_problem() -> None:
    with pytest.raises(ValueError, match="decay must be in"):
        EMA(tiny_net(), decay=1.0)
    with pytest.raises(ValueError, match="every must be an integer"):
        EMA(tiny_net(), every=0)
    with pytest.raises(ValueError, match="bn must be one of average, copy"):
        EMA(tiny_net(), bn="recompute")
