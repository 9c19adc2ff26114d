"""CIFAR-10 binary batches: bulk reading, archive or folder, validation, download, errors."""

from __future__ import annotations

import hashlib
import inspect
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnlab.cli.main import main
from cnnlab.data import cifar
from cnnlab.data.cifar import ARCHIVE, CIFAR10_CLASSES, FOLDER, DataFileError, parse_records
from cnnlab.data.datasets import DatasetNotFoundError, load_dataset
from cnnlab.data.download import SOURCES, DownloadError, fetch_dataset

TRAIN = [f"data_batch_{i}.bin" for i in range(1, 6)]
NAMES = ["plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def records(n: int, seed: int) -> tuple[bytes, np.ndarray, np.ndarray]:
    """``n`` CIFAR records and the (N, 3, 32, 32) images / labels they encode."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, 10, n, dtype=np.uint8)
    # Record = label byte, then the red plane, the green plane, the blue plane (row-major).
    blob = b"".join(bytes([labels[i]]) + images[i].tobytes() for i in range(n))
    return blob, images, labels.astype(np.int64)


@pytest.fixture(scope="module")
def fake(tmp_path_factory) -> dict:
    """A tiny archive with the official member names: 2 records per train batch, 3 test."""
    root = tmp_path_factory.mktemp("cifar")
    files, train_x, train_y = {}, [], []
    for i, name in enumerate(TRAIN):
        files[name], x, y = records(2, i)
        train_x.append(x)
        train_y.append(y)
    files["test_batch.bin"], test_x, test_y = records(3, 99)
    files["batches.meta.txt"] = ("\n".join(NAMES) + "\n\n").encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{FOLDER}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    (root / ARCHIVE).write_bytes(buf.getvalue())
    train = (np.concatenate(train_x), np.concatenate(train_y))
    return {"root": root, "files": files, "archive": buf.getvalue(), "train": train,
            "test": (test_x, test_y)}  # fmt: skip


def unpack(fake, dest: Path, skip: tuple[str, ...] = ()) -> Path:
    dest.mkdir(parents=True)
    for name, data in fake["files"].items():
        if name not in skip:
            (dest / name).write_bytes(data)
    return dest


def check(ds, fake) -> None:
    assert torch.equal(ds.train_images, torch.from_numpy(fake["train"][0]))
    assert torch.equal(ds.train_labels, torch.from_numpy(fake["train"][1]))
    assert torch.equal(ds.test_images, torch.from_numpy(fake["test"][0]))
    assert torch.equal(ds.test_labels, torch.from_numpy(fake["test"][1]))
    assert ds.classes == tuple(NAMES) and ds.in_chans == 3 and ds.image_size == 32


def test_reads_the_archive_without_extracting(fake):
    before = sorted(p.name for p in fake["root"].iterdir())
    ds = load_dataset("cifar10", fake["root"])
    check(ds, fake)
    assert "not the official 50,000/10,000" in ds.notice
    assert sorted(p.name for p in fake["root"].iterdir()) == before  # nothing written


def test_reads_an_unpacked_folder_in_each_layout(fake, tmp_path):
    unpack(fake, tmp_path / "a" / FOLDER)
    check(load_dataset("cifar10", tmp_path / "a"), fake)
    unpack(fake, tmp_path / "b" / "cifar10", skip=("batches.meta.txt",))
    ds = load_dataset("cifar10", tmp_path / "b")
    assert ds.classes == CIFAR10_CLASSES  # no meta file: the published names
    assert ds.source == str(tmp_path / "b" / "cifar10")


def test_parse_records_layout_and_validation():
    blob, images, labels = records(4, 1)
    x, y = parse_records(blob, "mem")
    assert np.array_equal(x, images) and np.array_equal(y, labels) and x.flags.writeable
    assert x[0, 0, 0, 1] == blob[2] and x[0, 1, 0, 0] == blob[1 + 1024]  # R plane, then G
    with pytest.raises(
        DataFileError, match=r"mem: 12,291 bytes is not a whole number of 3073-byte"
    ):
        parse_records(blob[:-1], "mem")
    bad = bytearray(blob)
    bad[3073] = 10
    with pytest.raises(
        DataFileError, match=r"mem: 1 label\(s\) outside \[0, 10\): first bad value 10 in record 1"
    ):
        parse_records(bytes(bad), "mem")
    with pytest.raises(DataFileError, match="0 bytes"):
        parse_records(b"", "mem")


def test_truncated_batch_file_is_named(fake, tmp_path):
    folder = unpack(fake, tmp_path / FOLDER)
    (folder / "data_batch_3.bin").write_bytes(fake["files"]["data_batch_3.bin"][:-5])
    with pytest.raises(DataFileError, match=r"data_batch_3\.bin: 6,141 bytes"):
        load_dataset("cifar10", tmp_path)


def test_broken_archives_are_named(fake, tmp_path):
    (tmp_path / ARCHIVE).write_bytes(fake["archive"][: len(fake["archive"]) // 2])
    with pytest.raises(DataFileError, match=rf"{ARCHIVE}: not a readable \.tar\.gz archive"):
        load_dataset("cifar10", tmp_path)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = fake["files"]["test_batch.bin"]
        info = tarfile.TarInfo(f"{FOLDER}/test_batch.bin")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    (tmp_path / ARCHIVE).write_bytes(buf.getvalue())
    with pytest.raises(DataFileError, match=rf"the archive lacks {FOLDER}/data_batch_1\.bin"):
        load_dataset("cifar10", tmp_path)


def test_missing_and_partial_copies(fake, tmp_path):
    with pytest.raises(DatasetNotFoundError, match="cifar-10-binary.tar.gz"):
        load_dataset("cifar10", tmp_path)  # empty: the message says what to put where
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        load_dataset("cifar10", tmp_path / "nowhere")
    unpack(fake, tmp_path / "p" / FOLDER, skip=("data_batch_4.bin", "test_batch.bin"))
    with pytest.raises(DatasetNotFoundError, match=r"missing data_batch_4\.bin, test_batch\.bin"):
        load_dataset("cifar10", tmp_path / "p")


def test_download_is_md5_checked_then_loads(fake, tmp_path):
    assert SOURCES["cifar10"].md5 == {ARCHIVE: "c32a1d4ab5d03f1284b67883e8d87530"}
    mirror = fake["root"].as_uri()
    md5 = hashlib.md5(fake["archive"]).hexdigest()
    with pytest.raises(DownloadError, match="checksum mismatch"):
        fetch_dataset("cifar10", tmp_path / "x", mirrors=[mirror])  # the official MD5
    assert not (tmp_path / "x" / ARCHIVE).exists()
    dest = fetch_dataset("cifar10", tmp_path / "y", mirrors=[mirror], checksums={ARCHIVE: md5})
    check(load_dataset("cifar10", dest), fake)


def test_cli_info_and_default_cache(fake, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("CNNLAB_DATA", str(fake["root"]))
    assert main(["data", "info", "cifar10"]) == 0
    out = capsys.readouterr().out
    assert "train (10, 3, 32, 32)" in out and "plane, car" in out
    monkeypatch.delenv("CNNLAB_DATA")
    assert main(["data", "info", "cifar10"]) == 2
    assert "cifar10 data set not found" in capsys.readouterr().err


def test_nothing_is_unpickled():
    source = inspect.getsource(cifar)
    assert "import pickle" not in source and "allow_pickle" not in source
