"""train_model: training an existing model object in memory (compression, distillation)."""

from __future__ import annotations

import torch

from cnnlab.pipeline import build_model_from_spec, train_model


def test_train_model_improves_an_existing_model(tiny_cfg):
    cfg = tiny_cfg(train={"epochs": 2})
    spec = {"name": "cnn1", "params": {}, "num_classes": 4, "in_chans": 1, "input_size": 12}
    model = build_model_from_spec(spec)
    before = model.head.weight.detach().clone()
    history, data = train_model(model, cfg, log=lambda m: None)
    assert len(history) == 2 and history[-1]["test_acc"] > 0.9
    assert not torch.equal(before, model.head.weight.detach())
    # the bundle is reusable: a second call on the same data trains one more epoch
    history2, _ = train_model(model, cfg, data=data, epochs=1, log=lambda m: None)
    assert len(history2) == 1
