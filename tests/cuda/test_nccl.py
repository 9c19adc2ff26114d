"""A one-process nccl group on one GPU (issue 23): cnnlab's collectives and a whole DDP
training through nccl, in a subprocess so the group dies with it. A single GPU cannot host two
nccl ranks, so the two-rank check stays on the CPU (tests/engine/test_distributed.py)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import torch

from cnnlab.engine.checkpoint import load_checkpoint

SCRIPT = r"""
import json, sys
import torch, torch.distributed as dist
from cnnlab.config import build_config
from cnnlab.engine import distributed as D
from cnnlab.evaluation.evaluate import EvalResult
from cnnlab.training.spine import run_training

class OneRank(D.DistInfo):
    @property
    def enabled(self):
        return True

info = OneRank(0, 1, 0)
D.init_process_group(info, "cuda")
out = {"backend": str(dist.get_backend()), "device": torch.cuda.current_device()}
t = torch.arange(4.0, device="cuda")
out["cuda_sum"] = D.all_reduce_sum(t, info).tolist()
out["cpu_sum"] = D.all_reduce_sum(torch.tensor([2.0, 3.0]), info).tolist()
torch.rand(3, device="cuda")  # CUDA in use: its RNG state is gathered too
rng = D.gather_rng_states(info)
out["rng"] = [len(rng), None if rng.cuda is None else len(rng.cuda)]
res = EvalResult(0.5, 0.75, 8, torch.tensor([[3, 1], [1, 3]]), 1.0)
red = D.reduce_eval(res, info)
out["eval"] = [red.loss, red.accuracy, red.num_samples]
out["object"] = D.broadcast_object({"x": 1}, info)
cfg = build_config(json.loads(sys.argv[2]))
out["ddp"] = run_training(cfg, sys.argv[1], log=lambda m: None, dist=info)["test_acc"]
D.shutdown(clean=True)
print(json.dumps(out))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_one_process_nccl_group_runs_collectives_and_ddp(tmp_path, cuda_cfg):
    cfg = cuda_cfg(train={"epochs": 2, "precision": "fp32"})
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()),
           "OMP_NUM_THREADS": "1"}  # fmt: skip
    cmd = [sys.executable, "-c", SCRIPT, str(tmp_path / "ddp"), json.dumps(cfg.to_dict())]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert "nccl" in out["backend"] and out["device"] == 0
    assert out["cuda_sum"] == [0.0, 1.0, 2.0, 3.0] and out["cpu_sum"] == [2.0, 3.0]
    assert out["rng"] == [1, 1]  # one CPU and one CUDA state per rank
    assert out["eval"] == [0.5, 0.75, 8] and out["object"] == {"x": 1}
    assert out["ddp"] > 0.9  # DDP through nccl learns the 4 synthetic classes
    assert "rng.cuda_rank.0" in load_checkpoint(tmp_path / "ddp").tensors


def test_torchrun_single_node_command_from_the_readme(tmp_path):
    # README: torchrun --nproc-per-node N -m cnnlab train ...; here N = 1 (one GPU)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "1",
           "-m", "cnnlab", "train", "--dataset", "synthetic", "--model", "cnn1", "--epochs", "1",
           "--device", "cuda", "--no-progress", "--out", str(tmp_path / "r"), "--json",
           "--set", "data.params.train_size=128", "--set", "data.params.test_size=32",
           "--set", "data.params.image_size=12", "--set", "data.params.num_classes=4"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1])["device"].startswith("cuda")
    assert torch.cuda.is_available()
