"""Checkpoints: exact round trip, safe loading, tamper/truncation detection, atomic replace."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from cnnlab.engine import atomic
from cnnlab.engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


def _model_opt():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(64, 3))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.5**t)
    x, y = torch.randn(8, 1, 6, 6), torch.randint(0, 3, (8,))
    for _ in range(3):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return model, opt, sched


def test_round_trip_restores_everything(tmp_path):
    model, opt, sched = _model_opt()
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, model=model, optimizer=opt, scheduler=sched, meta={"epoch": 3})
    rng_after_save = torch.rand(3)

    m2, o2, s2 = _model_opt()
    with torch.no_grad():
        for p in m2.parameters():
            p.add_(1.0)
    ckpt = load_checkpoint(path)
    ckpt.load_model(m2)
    ckpt.load_optimizer(o2)
    s2.load_state_dict(ckpt.meta["scheduler"])
    ckpt.restore_rng()
    assert ckpt.meta["epoch"] == 3
    for a, b in zip(model.state_dict().values(), m2.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    sa, sb = opt.state_dict(), o2.state_dict()
    assert sa["param_groups"] == sb["param_groups"]
    for pid in sa["state"]:
        for key, val in sa["state"][pid].items():
            assert torch.equal(torch.as_tensor(val), torch.as_tensor(sb["state"][pid][key]))
    assert s2.state_dict()["last_epoch"] == sched.state_dict()["last_epoch"]
    assert torch.equal(torch.rand(3), rng_after_save)  # RNG continues from the save point


def test_tampered_and_truncated_files_fail_clearly(tmp_path):
    model, opt, _ = _model_opt()
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, model=model, optimizer=opt, meta={})
    raw = bytearray(path.read_bytes())

    flipped = tmp_path / "flipped.safetensors"
    raw2 = bytearray(raw)
    raw2[-5] ^= 0xFF  # one byte of tensor data
    flipped.write_bytes(bytes(raw2))
    with pytest.raises(CheckpointError, match="does not match its recorded SHA-256"):
        load_checkpoint(flipped)

    for cut in (4, 100, len(raw) - 10):
        short = tmp_path / f"short{cut}.safetensors"
        short.write_bytes(bytes(raw[:cut]))
        with pytest.raises(CheckpointError, match="short"):
            load_checkpoint(short)

    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x80\x04not a checkpoint at all, maybe a pickle")
    with pytest.raises(CheckpointError, match="not a readable safetensors checkpoint"):
        load_checkpoint(junk)
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_other_architecture_is_named(tmp_path):
    model, _, _ = _model_opt()
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, model=model, meta={"model": {"name": "tiny"}})
    other = nn.Sequential(nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8), nn.Flatten(), nn.Linear(128, 3))
    msg = r"model 'tiny'.*shape mismatch: 0.bias: checkpoint \(4,\) vs model \(8,\)"
    with pytest.raises(CheckpointError, match=msg):
        load_checkpoint(path).load_model(other)
    longer = nn.Sequential(*model, nn.Linear(3, 3))
    with pytest.raises(CheckpointError, match=r"missing 2 tensors, e.g. 4.bias, 4.weight"):
        load_checkpoint(path).load_model(longer)


def test_crash_during_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    model, opt, _ = _model_opt()
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, model=model, optimizer=opt, meta={"epoch": 1})
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(atomic.os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, model=model, optimizer=opt, meta={"epoch": 2})
    assert path.read_bytes() == before
    assert load_checkpoint(path).meta["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]  # no temp file left
