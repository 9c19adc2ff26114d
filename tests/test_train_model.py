"""train_model: training an existing model object in memory (compression, distillation)."""

from __future__ import annotations

import torch

from cnnlab.models.spec import build_model
from cnnlab.training.spine import train_model


def test_train_model_improves_an_existing_model(tiny_cfg):
    cfg = tiny_cfg(train={"epochs": 2})
    spec = {"name": "cnn1", "params": {}, "num_classes": 4, "in_chans": 1, "input_size": 12}
    model = build_model(spec)
    before = model.head.weight.detach().clone()
    history, data = train_model(model, cfg, log=lambda m: None)
    assert len(history) == 2 and history[-1]["test_acc"] > 0.9
    assert not torch.equal(before, model.head.weight.detach())
    # the bundle is reusable: a second call on the same data trains one more epoch
    history2, _ = train_model(model, cfg, data=data, epochs=1, log=lambda m: None)
    assert len(history2) == 1


def test_sample_notice_in_full_once_then_a_reminder(tmp_path, monkeypatch):
    import cnnlab.data.datasets as datasets
    from cnnlab.config import build_config
    from cnnlab.training.assemble import _NOTICES_SHOWN, load_run_dataset

    monkeypatch.delenv("CNNLAB_DATA", raising=False)
    monkeypatch.setattr(datasets, "default_cache_dir", lambda: tmp_path)  # an empty cache
    _NOTICES_SHOWN.clear()
    lines: list[str] = []
    cfg = build_config({"data": {"data_dir": None}})
    for _ in range(2):
        load_run_dataset(cfg, log=lines.append)
    assert len(lines) == 2 and "cnnlab data fetch fashion-mnist" in lines[0]
    assert lines[1] == "note: fashion-mnist: embedded sample, not the full set (see the note above)"


def test_a_teacher_inside_the_task_runs_in_the_runtime_memory_format(tiny_cfg):
    from cnnlab.compression.distillation import DistillationTask

    cfg = tiny_cfg(train={"epochs": 1, "channels_last": "on"})
    spec = {"name": "cnn2", "params": {}, "num_classes": 4, "in_chans": 1, "input_size": 12}
    teacher, student = build_model(spec), build_model(spec)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    history, _ = train_model(student, cfg, task=DistillationTask(teacher), log=lambda m: None)
    assert len(history) == 1
    convs = [m for m in teacher.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs[-1].in_channels > 1  # (with one input channel NCHW is NHWC too)
    assert all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())  # frozen
