"""Fault tolerance: SIGKILL during training and during a checkpoint save, then --resume.

Both cases must end with exactly the weights and metrics of an uninterrupted run with the
same seed, and the checkpoint on disk must never be a half-written file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from cnnlab.engine.checkpoint import load_checkpoint

ARGS = [
    "--dataset", "synthetic", "--model", "cnn2", "--epochs", "3", "--no-progress",
    "--set", "data.params.train_size=256", "--set", "data.params.test_size=64",
    "--set", "data.params.image_size=12", "--set", "data.params.num_classes=4",
    "--set", "data.batch_size=32", "--set", "train.checkpoint_steps=5",
]  # fmt: skip

# Runs cnnlab train, but the process kills itself (SIGKILL, no clean-up possible) in the middle
# of the N-th checkpoint save, after half of the temporary file has been written.
CRASH_IN_SAVE = """
import os, signal, sys
import cnnlab.engine.checkpoint as ck
n = int(sys.argv[1]); calls = {"n": 0}
real = ck.atomic_write_bytes
def dying(path, data):
    calls["n"] += path.name == "checkpoint.safetensors"
    if path.name == "checkpoint.safetensors" and calls["n"] == n:
        tmp = path.with_name("." + path.name + ".crash.tmp")
        with open(tmp, "wb") as f:
            f.write(data[: len(data) // 2])
            f.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    return real(path, data)
ck.atomic_write_bytes = dying
from cnnlab.cli.main import main
sys.exit(main(sys.argv[2:]))
"""


def _cnnlab(*args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "cnnlab", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)  # fmt: skip


def _finish(proc: subprocess.Popen) -> None:
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()[-2000:]


def _same_result(ref, run) -> None:
    a, b = load_checkpoint(ref), load_checkpoint(run)
    for key, value in a.model_state().items():
        assert (value == b.model_state()[key]).all(), key
    ma = json.loads((ref / "metrics.json").read_text())
    mb = json.loads((run / "metrics.json").read_text())
    assert (ma["test_acc"], ma["test_loss"]) == (mb["test_acc"], mb["test_loss"])


@pytest.mark.slow
def test_sigkill_during_training_then_resume_is_exact(tmp_path):
    ref = tmp_path / "ref"
    _finish(_cnnlab("train", *ARGS, "--out", str(ref)))

    run = tmp_path / "run"
    proc = _cnnlab("train", *ARGS, "--out", str(run))
    deadline = time.time() + 120
    while not (run / "checkpoint.safetensors").exists():  # wait for the first checkpoint
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    step = load_checkpoint(run).meta["state"]["step"]
    assert step < 24  # 3 epochs x 8 steps: it really died before the end
    _finish(_cnnlab("train", "--resume", "--out", str(run)))
    _same_result(ref, run)


@pytest.mark.slow
def test_sigkill_in_the_middle_of_a_save_keeps_the_previous_checkpoint(tmp_path):
    ref = tmp_path / "ref"
    _finish(_cnnlab("train", *ARGS, "--out", str(ref)))

    run = tmp_path / "run"
    script = tmp_path / "crash.py"
    script.write_text(CRASH_IN_SAVE)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # die during the 3rd write of checkpoint.safetensors (after steps 5 and 8, at step 10)
    done = subprocess.run([sys.executable, str(script), "3", "train", *ARGS, "--out", str(run)],
                          env=env, capture_output=True, timeout=300)  # fmt: skip
    assert done.returncode == -signal.SIGKILL
    ckpt = load_checkpoint(run)  # verifies the SHA-256: an intact, earlier checkpoint
    assert ckpt.meta["state"]["step"] == 8  # the save at step 10 died; step 8's survived
    assert list(run.glob(".*.tmp"))  # the half-written temporary file is there...
    _finish(_cnnlab("train", "--resume", "--out", str(run)))
    assert not list(run.glob(".*.tmp"))  # ...and gone after the resume
    _same_result(ref, run)
