"""Bad input, end to end through the command line: each case ends with one clear error line,
a non-zero exit code and no partial output (handbook-independent robustness, issue 9).

NaN pixels cannot occur in cnnlab's data sets (pixels are stored and loaded as uint8; the loader
refuses anything else), so the NaN case is covered where it can arise: a diverging loss stops
the run with the step named (tests/engine/test_trainer.py).
"""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from cnnlab.cli.main import main
from cnnlab.data.idx import write_idx

OUT_FILES = ("checkpoint.safetensors", "metrics.json", "history.csv")


def _idx_dir(tmp_path, *, labels=None, n_test=20, truncate=None, corrupt=None):
    d = tmp_path / "data"
    d.mkdir()
    rng = np.random.default_rng(0)
    for split, n in (("train", 40), ("t10k", n_test)):
        write_idx(d / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), np.uint8))
        lab = rng.integers(0, 10, n).astype(np.uint8) if labels is None else labels(n)
        write_idx(d / f"{split}-labels-idx1-ubyte.gz", lab)
    if truncate:
        path = d / truncate
        raw = gzip.decompress(path.read_bytes())
        path.write_bytes(gzip.compress(raw[: len(raw) // 2]))
    if corrupt:
        path = d / corrupt
        path.write_bytes(path.read_bytes()[:30] + b"garbage" * 10)
    return d


def _train(tmp_path, *args):
    out = tmp_path / "run"
    code = main(["train", "--epochs", "1", "--no-progress", "--out", str(out), *args])
    return code, out


def _assert_clean_failure(code, out, capsys, *fragments):
    err = capsys.readouterr().err
    assert code != 0
    assert err.startswith("cnnlab: error:") and "Traceback" not in err
    for f in fragments:
        assert f in err, err
    for name in OUT_FILES:
        assert not (out / name).exists()


@pytest.mark.parametrize(
    ("kwargs", "fragments"),
    [
        ({"truncate": "train-images-idx3-ubyte.gz"}, ["train-images-idx3-ubyte.gz", "truncated"]),
        ({"corrupt": "t10k-labels-idx1-ubyte.gz"}, ["t10k-labels-idx1-ubyte.gz"]),
        ({"labels": lambda n: np.full(n, 12, np.uint8)}, ["outside [0, 10)", "first bad value 12"]),
        ({"n_test": 0}, ["the test split is empty"]),
    ],
)
def test_bad_idx_files(tmp_path, capsys, kwargs, fragments):
    d = _idx_dir(tmp_path, **kwargs)
    code, out = _train(tmp_path, "--model", "cnn1", "--data-dir", str(d))
    _assert_clean_failure(code, out, capsys, *fragments)


def test_missing_file_names_it_and_the_fix(tmp_path, capsys):
    d = _idx_dir(tmp_path)
    (d / "t10k-images-idx3-ubyte.gz").unlink()
    code, out = _train(tmp_path, "--data-dir", str(d))
    _assert_clean_failure(code, out, capsys, "t10k-images-idx3-ubyte", "cnnlab data fetch")


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--set", "optim.learning_rate=0.1"], ["unknown key 'optim.learning_rate'"]),
        (["--set", "train.epochs=two"], ["train.epochs: expected an integer, found 'two'"]),
        (["--set", "data.batch_size=-5"], ["data.batch_size"]),
        (["--set", "model.params.dropout=1.5"], ["dropout"]),
        (["--set", "data.augment=[{name: rotat}]"], ["rotat"]),
    ],
)
def test_bad_config_values(tmp_path, capsys, args, fragments):
    code, out = _train(tmp_path, "--dataset", "synthetic", *args)
    _assert_clean_failure(code, out, capsys, *fragments)


def test_bad_image_folders(tmp_path, capsys):
    from PIL import Image

    root = tmp_path / "images"
    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (20, 20), (i * 40, 0, 0)).save(root / cls / f"{i}.png")
    (root / "dog" / "broken.png").write_bytes(b"\x89PNG not really")
    code, out = _train(tmp_path, "--dataset", "image_folder", "--data-dir", str(root),
                       "--set", "data.params.image_size=12")  # fmt: skip
    _assert_clean_failure(code, out, capsys, "broken.png")
    (root / "bird").mkdir()
    (root / "dog" / "broken.png").unlink()
    code, out = _train(tmp_path, "--dataset", "image_folder", "--data-dir", str(root),
                       "--set", "data.params.image_size=12")  # fmt: skip
    _assert_clean_failure(code, out, capsys, "bird")


def test_tampered_and_foreign_checkpoints(tmp_path, capsys):
    base = ["--dataset", "synthetic", "--set", "data.params.image_size=12",
            "--set", "data.params.train_size=64", "--set", "data.params.test_size=16"]  # fmt: skip
    code, run = _train(tmp_path, *base, "--model", "cnn1")
    assert code == 0
    capsys.readouterr()
    ckpt = run / "checkpoint.safetensors"
    raw = bytearray(ckpt.read_bytes())
    raw[-3] ^= 0x55
    ckpt.write_bytes(bytes(raw))
    assert main(["eval", str(run)]) == 2
    assert "SHA-256" in capsys.readouterr().err
    # a checkpoint of another architecture as the start of a fine-tune
    code, _ = _train(tmp_path / "b", *base, "--model", "cnn2",
                     "--set", f"finetune.checkpoint={run}")  # fmt: skip
    assert code == 2
    assert "SHA-256" in capsys.readouterr().err  # verified before anything is used
