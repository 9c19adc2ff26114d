"""Two-process DDP on the CPU (gloo): ranks stay identical and follow single-process training.

Tolerance: the ranks average their gradients with an all-reduce, which sums in a different
order than one process summing over the whole batch; after 16 SGD steps the weights agree to
about 1e-7 relative, so 1e-5 absolute is a safe, still meaningful bound.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from cnnlab.engine.checkpoint import load_checkpoint

TOL = 1e-5


WORKER = """
import json, os, sys
import torch
from safetensors.torch import save_file
from cnnlab.config import build_config
from cnnlab.engine.callbacks import Callback
from cnnlab.engine.distributed import dist_info_from_env, init_process_group, shutdown
from cnnlab.training.spine import run_training

class SaveWeights(Callback):  # every rank writes its own final weights
    def __init__(self, path):
        self.path = path
    def on_fit_end(self, trainer, state):
        model = getattr(trainer.model, "module", trainer.model)  # unwrap DDP
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, self.path)

out, cfg_json = sys.argv[1], sys.argv[2]
info = dist_info_from_env(os.environ)
init_process_group(info, "cpu")
try:
    run_training(build_config(json.loads(cfg_json)), out, log=lambda m: None, dist=info,
                 callbacks=[SaveWeights(f"{out}.rank{info.rank}.safetensors")])
    shutdown(clean=True)
finally:
    shutdown()
"""


def _torchrun(script, *args: str) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           "--nproc-per-node=2", str(script), *args]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]


def _history(run_dir):
    return load_checkpoint(run_dir).meta["state"]["history"]


@pytest.mark.slow
def test_two_process_ddp_matches_single_process(tmp_path, tiny_cfg):
    from safetensors.torch import load_file

    from cnnlab.training.spine import run_training

    cfg = tiny_cfg(
        optim={"name": "sgd", "lr": 0.05, "params": {"momentum": 0.9}},
        # fp32: under bf16 autocast (what "auto" picks on a CPU with native bf16) the
        # half-batch reductions round differently and the runs part by ~1e-3
        train={"epochs": 2, "precision": "fp32"},
    )  # 256 images, global batch 32: 8 steps per epoch; cnn1 has no dropout or BN
    run_training(cfg, tmp_path / "single", log=lambda m: None)

    ddp_dir = tmp_path / "ddp"
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    _torchrun(script, str(ddp_dir), json.dumps(cfg.to_dict()))

    w0 = load_file(f"{ddp_dir}.rank0.safetensors")
    w1 = load_file(f"{ddp_dir}.rank1.safetensors")
    ref = load_checkpoint(tmp_path / "single").model_state()
    for key in ref:
        assert torch.equal(w0[key], w1[key]), f"ranks differ in {key}"
        torch.testing.assert_close(w0[key], ref[key], atol=TOL, rtol=0)
    one, two = _history(tmp_path / "single"), _history(ddp_dir)
    for a, b in zip(one, two, strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], abs=1e-5)
        assert b["test_acc"] == pytest.approx(a["test_acc"])
    written = sorted(p.name for p in ddp_dir.iterdir())
    assert "rank1" not in " ".join(written)  # only rank 0 writes the run directory
