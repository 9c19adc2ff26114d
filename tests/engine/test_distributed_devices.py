"""Process groups and RNG states ready for CUDA (issue 23), checked on the CPU: the backend per
device, CPU-tensor collectives in a one-process group, and per-rank CUDA RNG states in
checkpoints. tests/cuda/ runs the same in a real one-process nccl group."""

from __future__ import annotations

import socket

import pytest
import torch
import torch.distributed as dist

from cnnlab.engine import distributed as D
from cnnlab.engine.checkpoint import load_checkpoint, save_checkpoint
from cnnlab.evaluation.evaluate import EvalResult


class OneRankGroup(D.DistInfo):
    """A DistInfo that takes the multi-process code paths with a single process."""

    @property
    def enabled(self) -> bool:
        return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def one_rank_gloo(monkeypatch):
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(_free_port()))
    info = OneRankGroup(0, 1, 0)
    D.init_process_group(info, "cpu")
    yield info
    D.shutdown(clean=True)


def test_backends_are_gloo_on_cpu_and_nccl_with_gloo_on_cuda():
    assert D.BACKENDS["cpu"] == "gloo"
    assert D.BACKENDS["cuda"] == "cpu:gloo,cuda:nccl"  # CUDA tensors go to nccl


def test_collectives_of_cpu_tensors_in_a_group(one_rank_gloo):
    info = one_rank_gloo
    assert dist.is_initialized() and dist.get_backend() == "gloo"
    t = torch.tensor([1.0, 2.0])
    assert D.all_reduce_sum(t, info) is t and t.tolist() == [1.0, 2.0]
    states = D.gather_rng_states(info)
    assert isinstance(states, D.RngStates) and len(states) == 1
    assert torch.equal(states[0], torch.get_rng_state())
    assert states.cuda is None  # no CUDA in use in this process
    cm = torch.tensor([[3, 1], [0, 4]])
    res = EvalResult(loss=0.5, accuracy=0.875, num_samples=8, confusion=cm, seconds=1.0)
    red = D.reduce_eval(res, info)
    assert (red.loss, red.accuracy, red.num_samples) == (0.5, 0.875, 8)
    assert torch.equal(red.confusion, cm)
    assert D.broadcast_object({"a": 1}, info) == {"a": 1}


def test_checkpoints_keep_each_ranks_cuda_rng_state(tmp_path):
    model = torch.nn.Linear(2, 2)
    cpu = [torch.get_rng_state(), torch.get_rng_state()]
    cuda = [torch.arange(16, dtype=torch.uint8), torch.arange(16, 32, dtype=torch.uint8)]
    save_checkpoint(tmp_path / "a.safetensors", model=model, meta={},
                    rng_states=D.RngStates(cpu, cuda))  # fmt: skip
    keys = set(load_checkpoint(tmp_path / "a.safetensors").tensors)
    assert {"rng.torch.0", "rng.torch.1", "rng.cuda_rank.0", "rng.cuda_rank.1"} <= keys
    assert torch.equal(load_checkpoint(tmp_path / "a.safetensors").tensors["rng.cuda_rank.1"],
                       cuda[1])  # fmt: skip
    # a plain list of CPU states (several ranks) saves no CUDA state: it has none to give
    save_checkpoint(tmp_path / "b.safetensors", model=model, meta={}, rng_states=cpu)
    assert not [k for k in load_checkpoint(tmp_path / "b.safetensors").tensors if "cuda" in k]


def test_restoring_rng_sets_this_ranks_cpu_state(tmp_path):
    torch.manual_seed(1)
    saved = torch.get_rng_state()
    states = D.RngStates([saved], [torch.zeros(16, dtype=torch.uint8)])
    save_checkpoint(tmp_path / "c.safetensors", model=torch.nn.Linear(2, 2), meta={},
                    rng_states=states)  # fmt: skip
    torch.rand(5)  # move the generator on
    ckpt = load_checkpoint(tmp_path / "c.safetensors")
    if torch.cuda.is_available():  # pragma: no cover - tests/cuda/ covers the CUDA state
        pytest.skip("restores a fake CUDA state; run on a machine without CUDA")
    ckpt.restore_rng(0)
    assert torch.equal(torch.get_rng_state(), saved)
