"""The combined optimiser: conv filters by Muon (orthogonalised updates), the rest by AdamW."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from cnnlab.config import build_config
from cnnlab.optim.muon import MuonWith
from cnnlab.optim.optimizers import build_optimizer
from cnnlab.optim.schedules import build_scheduler

MUON_LR, LR = 0.02, 1e-3


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(16, 5),
    )  # fmt: skip


def make(model: nn.Module, **params) -> MuonWith:
    cfg = build_config({"optim": {"name": "muon", "lr": LR, "weight_decay": 0.01,
                                  "params": {"muon_lr": MUON_LR, **params}}})  # fmt: skip
    opt = build_optimizer(model, cfg.optim)
    assert isinstance(opt, MuonWith)
    return opt


def backward(model: nn.Module, seed: int = 1) -> None:
    torch.manual_seed(seed)
    x = torch.randn(6, 3, 8, 8)
    if next(model.parameters()).is_contiguous(memory_format=torch.channels_last):
        x = x.contiguous(memory_format=torch.channels_last)
    model(x).logsumexp(1).mean().backward()


def test_filters_take_orthogonalised_updates_the_rest_adamw() -> None:
    model = net()
    reference = copy.deepcopy(model)
    opt = make(model)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    backward(model)
    backward(reference)
    opt.step()
    # Every 4-D parameter moved by lr * O with O = NS(momentum update): singular values ~1.
    for name in ("0.weight", "3.weight"):
        w = dict(model.named_parameters())[name]
        step = (before[name] - w.detach()) / MUON_LR  # (out, in, k, k); 8 <= 27 and 16 <= 72
        sv = torch.linalg.svdvals(step.reshape(step.shape[0], -1).double())
        assert sv.min() > 0.5 and sv.max() < 1.5, (name, sv)
        assert abs(sv.mean().item() - 1) < 0.25, (name, sv)
    # Everything else follows torch's AdamW with the same settings, exactly.
    others = [p for p in reference.parameters() if p.ndim != 4]
    norms = (nn.BatchNorm2d,)
    decay = [
        p
        for m in reference.modules()
        for n, p in m.named_parameters(recurse=False)
        if p.ndim != 4 and not n.endswith("bias") and p.ndim > 1 and not isinstance(m, norms)
    ]
    no_decay = [p for p in others if all(p is not q for q in decay)]  # fmt: skip
    adamw = torch.optim.AdamW([{"params": decay}, {"params": no_decay, "weight_decay": 0.0}],
                              lr=LR, weight_decay=0.01)  # fmt: skip
    adamw.step()
    live = dict(model.named_parameters())
    for name, p in reference.named_parameters():
        if p.ndim != 4:
            torch.testing.assert_close(live[name].detach(), p.detach(), rtol=0, atol=0)


def test_channels_last_filters_get_the_same_update() -> None:
    plain, nhwc = net(), net().to(memory_format=torch.channels_last)
    opts = [make(plain), make(nhwc)]
    for model, opt in zip((plain, nhwc), opts, strict=False):
        backward(model)
        opt.step()
    assert nhwc[0].weight.is_contiguous(memory_format=torch.channels_last)
    for a, b in zip(plain.parameters(), nhwc.parameters(), strict=False):
        torch.testing.assert_close(a, b, rtol=1e-2, atol=1e-4)  # bf16 Newton-Schulz


def test_state_dict_round_trip_through_a_checkpoint(tmp_path) -> None:
    from cnnlab.engine.checkpoint import load_checkpoint, save_checkpoint

    model = net()
    opt = make(model)
    for seed in (1, 2):
        opt.zero_grad()
        backward(model, seed)
        opt.step()
    save_checkpoint(tmp_path / "c.safetensors", model=model, optimizer=opt, meta={})
    twin = copy.deepcopy(model)
    twin_opt = make(twin)
    load_checkpoint(tmp_path / "c.safetensors").load_optimizer(twin_opt)
    buf = opt.state[model[0].weight]["momentum_buffer"]
    torch.testing.assert_close(twin_opt.state[twin[0].weight]["momentum_buffer"], buf)
    assert twin_opt.param_groups[0]["ns_coefficients"] == opt.param_groups[0]["ns_coefficients"]
    for m, o in ((model, opt), (twin, twin_opt)):  # one more step each: identical
        o.zero_grad()
        backward(m, 3)
        o.step()
    for a, b in zip(model.parameters(), twin.parameters(), strict=False):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_the_schedule_drives_both_learning_rates_and_zero_grad_clears_filters() -> None:
    model = net()
    opt = make(model)
    cfg = build_config({"schedule": {"name": "cosine"}})
    sched = build_scheduler(opt, cfg.schedule, total_steps=4, steps_per_epoch=2)
    backward(model)
    opt.step()
    sched.step()
    lrs = [g["lr"] for g in opt.param_groups]
    assert lrs[0] == pytest.approx(MUON_LR * 0.5 * (1 + torch.cos(torch.tensor(torch.pi / 4))))
    assert opt._muon.param_groups[0]["lr"] == MUON_LR  # synced at the next step
    opt.zero_grad(set_to_none=True)
    assert model[0].weight.grad is None
    backward(model)
    opt.step()
    assert opt._muon.param_groups[0]["lr"] == pytest.approx(lrs[0])


def test_models_without_filters_and_bad_options() -> None:
    linear = nn.Linear(3, 2)
    opt = make(linear)  # no 4-D parameter: only the other optimiser
    assert all(not g.get("muon") for g in opt.param_groups)
    with pytest.raises(ValueError, match="rest: expected one of adamw, adam, nesterov, sgd"):
        make(linear, rest="lion")


def test_orthogonalize_in_bf16_is_torchs_newton_schulz() -> None:
    from torch.optim._muon import DEFAULT_A, DEFAULT_B, DEFAULT_C, _zeropower_via_newtonschulz

    from cnnlab.optim.muon import orthogonalize

    coefficients = (DEFAULT_A, DEFAULT_B, DEFAULT_C)
    torch.manual_seed(0)
    for shape in ((8, 27), (30, 12)):  # wide and tall
        g = torch.randn(shape)
        ours = orthogonalize(g, coefficients, 5, 1e-7, torch.bfloat16)
        theirs = _zeropower_via_newtonschulz(g.clone(), coefficients, 5, 1e-7)
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
        # in fp32 the same iteration, singular values in the band Muon aims for (~0.7-1.2)
        sv = torch.linalg.svdvals(orthogonalize(g, coefficients, 5, 1e-7, torch.float32).double())
        assert sv.min() > 0.5 and sv.max() < 1.5, sv
        torch.testing.assert_close(orthogonalize(g, coefficients, 5, 1e-7, torch.float32),
                                   ours.float(), rtol=0, atol=0.05)  # bf16's rounding  # fmt: skip


@pytest.mark.parametrize("options", [{}, {"nesterov": False, "weight_decay": 0.1,
                                          "adjust_lr_fn": "match_rms_adamw"}])  # fmt: skip
def test_muon_in_bf16_steps_exactly_as_torchs(options) -> None:
    from cnnlab.optim.muon import Muon

    torch.manual_seed(0)
    ws = [torch.randn(8, 27), torch.randn(20, 6)]
    ours = [w.clone().requires_grad_() for w in ws]
    theirs = [w.clone().requires_grad_() for w in ws]
    opt_ours = Muon(ours, lr=0.02, ns_dtype=torch.bfloat16, **options)
    opt_theirs = torch.optim.Muon(theirs, lr=0.02, **options)
    for step in range(3):
        torch.manual_seed(step)
        grads = [torch.randn_like(w) for w in ws]
        for params, opt in ((ours, opt_ours), (theirs, opt_theirs)):
            for p, g in zip(params, grads, strict=True):
                p.grad = g.clone()
            opt.step()
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    for a, b in zip(ours, theirs, strict=True):
        buffers = opt_ours.state[a]["momentum_buffer"], opt_theirs.state[b]["momentum_buffer"]
        torch.testing.assert_close(*buffers, rtol=0, atol=0)


def test_ns_precision_auto_follows_the_hardware_and_can_be_forced(monkeypatch) -> None:
    import cnnlab.optim.muon as muon_module

    w = torch.zeros(4, 9)
    for native, expected in ((False, torch.float32), (True, torch.bfloat16)):
        monkeypatch.setattr(muon_module, "native_bf16", lambda device, n=native: n)
        assert muon_module.Muon([w], lr=0.1).dtype_for(w) is expected
    opt = make(net(), ns_precision="fp32")
    assert opt._muon.dtype_for(w) is torch.float32
    with pytest.raises(
        ValueError, match="ns_precision: expected one of auto, bf16, fp32, found 'fp16'"
    ):
        make(net(), ns_precision="fp16")
