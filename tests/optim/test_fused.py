"""torch's fused optimisers on CUDA parameters, the default ones elsewhere (issue 23)."""

from __future__ import annotations

import torch

from cnnlab.config import build_config
from cnnlab.optim.optimizers import build_optimizer, fused_on_gpu


def test_cpu_parameters_keep_the_default_implementation():
    net = torch.nn.Linear(3, 2)
    groups, options = fused_on_gpu(p for p in net.parameters())  # a generator, used once
    assert options == {} and len(groups) == 2
    groups, options = fused_on_gpu([{"params": iter(net.parameters()), "lr": 0.1}])
    assert options == {} and len(groups[0]["params"]) == 2 and groups[0]["lr"] == 0.1
    for name in ("adam", "adamw", "sgd", "momentum", "nesterov"):
        opt = build_optimizer(net, build_config({"optim": {"name": name}}).optim)
        assert not opt.defaults.get("fused"), name


def test_meta_tensors_are_not_cuda():
    # a device that is neither CPU nor CUDA: no fused flag (torch decides for itself)
    assert fused_on_gpu([torch.empty(2, device="meta")])[1] == {}
