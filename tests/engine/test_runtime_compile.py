"""``train.compile`` / ``train.compile_mode``: selectable, validated, recorded (issue 23)."""

from __future__ import annotations

import pytest
import torch

from cnnlab.config import ConfigError, build_config
from cnnlab.engine import runtime as R


def _runtime(**train):
    return R.resolve_runtime(build_config({"train": {"device": "cpu", **train}}).train)


def test_compile_mode_reaches_torch_compile_and_the_description(monkeypatch):
    calls = []
    monkeypatch.setattr(torch, "compile", lambda model, **kw: calls.append(kw) or model)
    net = torch.nn.Linear(2, 2)
    assert _runtime().compile_model(net) is net and calls == []  # off: untouched
    rt = _runtime(compile=True, compile_mode="reduce-overhead")
    rt.compile_model(net)
    assert calls == [{"mode": "reduce-overhead"}]
    assert "compiled (reduce-overhead)" in rt.describe()
    _runtime(compile=True).compile_model(net)
    assert calls[-1] == {"mode": None}  # "default" is torch's own default
    assert "compiled" not in _runtime().describe()


def test_cuda_graphs_are_only_marked_for_compiled_cuda_runs():
    rt = _runtime(compile=True, compile_mode="reduce-overhead")
    assert not rt.uses_cudagraphs  # on the CPU there are no CUDA graphs
    cuda = R.Runtime(torch.device("cuda"), None, False, True, "reduce-overhead")
    assert cuda.uses_cudagraphs
    assert not R.Runtime(torch.device("cuda"), None, False, True, "default").uses_cudagraphs
    assert not R.Runtime(torch.device("cuda"), None, False, False, "max-autotune").uses_cudagraphs
    assert set(R.CUDAGRAPH_MODES) <= set(R.COMPILE_MODES)


def test_a_bad_compile_mode_names_the_key_and_the_choices():
    with pytest.raises(ConfigError, match=r"train\.compile_mode.*reduce-overhead"):
        build_config({"train": {"compile_mode": "fastest"}})
    assert build_config({}).train.compile_mode == "default"
