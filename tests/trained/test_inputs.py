"""Expanding ``cnnlab predict`` inputs: files, folders, globs, IDX, .npy; order; the pool."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from cnnlab.data.idx import write_idx
from cnnlab.trained import inputs as inputs_mod
from cnnlab.trained.inputs import ArrayFile, Decoding, Failure, chunks, expand_inputs

HOW = Decoding(size=6, mode="L", fit="stretch", background="black")


def picture(path: Path, level: int, size=(6, 6)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", size, level).save(path)
    return path


def test_expansion_keeps_the_order_and_names_every_failure(tmp_path):
    a = picture(tmp_path / "a.png", 10)
    deep = picture(tmp_path / "shots" / "x" / "deep.jpg", 20)
    top = picture(tmp_path / "shots" / "top.bmp", 30)
    (tmp_path / "shots" / "notes.txt").write_text("no")
    (tmp_path / "shots" / ".hidden.png").write_text("skipped")
    np.save(tmp_path / "shots" / "arr.npy", np.zeros((2, 6, 6), np.uint8))
    (tmp_path / "empty").mkdir()
    units, ignored = expand_inputs(
        [
            a,
            tmp_path / "shots",
            str(tmp_path / "*.png"),
            tmp_path / "nope.png",
            str(tmp_path / "*.gif"),
            tmp_path / "empty",
        ]
    )
    assert units == [
        a,
        ArrayFile(tmp_path / "shots" / "arr.npy", "npy"),
        top,
        deep,  # files of a folder first, then its sub-folders (sorted, recursive)
        a,
        Failure(str(tmp_path / "nope.png"), "no such file or folder"),
        Failure(str(tmp_path / "*.gif"), "pattern matches no files"),
        Failure(str(tmp_path / "empty"), "folder holds no image, IDX or .npy files"),
    ]
    assert ignored == [tmp_path / "shots" / "notes.txt"]
    assert inputs_mod.array_kind(Path("t10k-images-idx3-ubyte.gz")) == "idx"


def test_chunks_decode_in_order_with_errors_in_place(tmp_path):
    files = [picture(tmp_path / f"{i}.png", 10 * i, size=(6 + i, 6)) for i in range(5)]
    (tmp_path / "bad.png").write_bytes(b"")
    write_idx(tmp_path / "imgs-idx3-ubyte", np.full((3, 6, 6), 77, np.uint8))
    write_idx(tmp_path / "labels-idx1-ubyte", np.zeros(3, np.uint8))
    idx, labels = tmp_path / "imgs-idx3-ubyte", tmp_path / "labels-idx1-ubyte"
    units, _ = expand_inputs([*files[:2], tmp_path / "bad.png", *files[2:], idx, labels])
    got = list(chunks(units, HOW, batch_size=2, workers=0))
    names = [n for c in got for n in c.names]
    want = [*map(str, files[:2]), str(tmp_path / "bad.png"), *map(str, files[2:])]
    assert names == [*want, *[f"{idx}[{i}]" for i in range(3)], str(labels)]
    errors = [e for c in got for e in c.errors]
    assert errors[2] == "OSError: empty file (0 bytes)"
    assert "holds shape (3,) (labels?)" in errors[-1]
    assert sum(e is not None for e in errors) == 2
    levels = np.concatenate([c.pixels for c in got])[:, 0, 0, 0].tolist()
    assert levels == [0, 10, 20, 30, 40, 77, 77, 77]  # pixels only for the rows that decoded


def test_the_process_pool_gives_what_one_process_gives(tmp_path, monkeypatch):
    files = [picture(tmp_path / f"{i:02d}.png", 7 * i, size=(5 + i % 4, 8)) for i in range(23)]
    (tmp_path / "05.png").write_text("broken")
    units, _ = expand_inputs([tmp_path])
    serial = list(chunks(units, HOW, batch_size=4, workers=0))
    monkeypatch.setattr(inputs_mod, "_MIN_FILES_FOR_POOL", 0)
    pooled = list(chunks(units, HOW, batch_size=4, workers=2))
    assert [c.names for c in pooled] == [c.names for c in serial]
    assert [c.errors for c in pooled] == [c.errors for c in serial]
    for a, b in zip(pooled, serial, strict=True):
        assert np.array_equal(a.pixels, b.pixels)
    assert len(files) == 23 and sum(len(c.names) for c in pooled) == 23
