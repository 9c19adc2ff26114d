"""IDX reader/writer: round trips, byte layout checked by hand, and every bad-input error."""

from __future__ import annotations

import gzip
import os
import stat
import struct
from pathlib import Path

import numpy as np
import pytest

from cnnlab.data.idx import IdxError, read_idx, read_image_label_pair, write_idx

DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


def _idx_bytes(code: int, shape: tuple[int, ...], payload: bytes) -> bytes:
    """An IDX file built by hand with struct (independent of write_idx)."""
    return bytes([0, 0, code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape) + payload


def _raises(path: Path, *fragments: str, call=read_idx) -> str:
    with pytest.raises(IdxError) as info:
        call(path)
    msg = str(info.value)
    assert str(path) in msg
    for frag in fragments:
        assert frag in msg, f"{frag!r} not in {msg!r}"
    return msg


@pytest.mark.parametrize("compress", [True, False], ids=["gz", "raw"])
@pytest.mark.parametrize("ndim", [1, 2, 3, 4])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_round_trip(tmp_path, dtype, ndim, compress):
    rng = np.random.default_rng(ndim)
    shape = (3, 2, 4, 5)[:ndim]
    if np.dtype(dtype).kind == "f":
        arr = rng.standard_normal(shape).astype(dtype)
    else:
        info = np.iinfo(dtype)
        arr = rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
    path = tmp_path / ("a.idx.gz" if compress else "a.idx")
    write_idx(path, arr)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == compress
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.dtype.isnative
    assert back.shape == shape and back.flags.writeable
    np.testing.assert_array_equal(back, arr)


def test_write_layout_matches_hand_built_bytes(tmp_path):
    write_idx(tmp_path / "u8", np.array([[1, 2, 3], [4, 5, 6]], dtype=np.uint8))
    expected = b"\x00\x00\x08\x02" + b"\x00\x00\x00\x02\x00\x00\x00\x03" + bytes([1, 2, 3, 4, 5, 6])
    assert (tmp_path / "u8").read_bytes() == expected
    write_idx(tmp_path / "i16", np.array([-2, 300], dtype=np.int16))
    assert (tmp_path / "i16").read_bytes() == _idx_bytes(0x0B, (2,), struct.pack(">hh", -2, 300))


def test_read_hand_built_big_endian_float(tmp_path):
    path = tmp_path / "f64"
    path.write_bytes(_idx_bytes(0x0E, (2, 1), struct.pack(">dd", 1.5, -2.25)))
    np.testing.assert_array_equal(read_idx(path), [[1.5], [-2.25]])


def test_gzip_detected_by_magic_not_suffix(tmp_path):
    data = _idx_bytes(0x08, (3,), b"\x07\x08\x09")
    (tmp_path / "packed").write_bytes(gzip.compress(data))  # gzip without .gz
    (tmp_path / "plain.gz").write_bytes(data)  # raw despite .gz
    for name in ("packed", "plain.gz"):
        np.testing.assert_array_equal(read_idx(tmp_path / name), [7, 8, 9])


def test_write_gzip_flag_overrides_suffix_and_is_reproducible(tmp_path):
    arr = np.arange(10, dtype=np.uint8)
    write_idx(tmp_path / "a", arr, gzip=True)
    write_idx(tmp_path / "b.gz", arr, gzip=False)
    assert (tmp_path / "a").read_bytes()[:2] == b"\x1f\x8b"
    assert (tmp_path / "b.gz").read_bytes()[:4] == b"\x00\x00\x08\x01"
    write_idx(tmp_path / "c", arr, gzip=True)
    assert (tmp_path / "a").read_bytes() == (tmp_path / "c").read_bytes()  # no timestamp/name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b.gz", "c"]  # no temp files


@pytest.mark.parametrize(
    ("data", "fragments"),
    [
        (b"\x01\x00\x08\x01\x00\x00\x00\x01\x05", ["not an IDX file", "two zero bytes", "0x01"]),
        (b"\x00\x00\x0a\x01\x00\x00\x00\x01\x05", ["unknown IDX data type code 0x0A", "0x08"]),
        (b"\x00\x00\x08\x00", ["0 dimensions", "expected 1 to 4"]),
        (b"\x00\x00\x08\x05" + b"\x00\x00\x00\x01" * 5, ["5 dimensions", "expected 1 to 4"]),
        (b"\x00\x00", ["too short", "found 2 byte"]),
        (b"\x00\x00\x08\x03\x00\x00\x00\x02", ["truncated header", "need 16", "found 8"]),
    ],
    ids=["magic", "dtype", "zero-dims", "five-dims", "short", "header"],
)
def test_bad_header(tmp_path, data, fragments):
    path = tmp_path / "bad-idx1-ubyte"
    path.write_bytes(data)
    _raises(path, *fragments)


def test_truncated_payload_message(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(_idx_bytes(0x08, (600, 28, 28), bytes(1000))))
    _raises(path, "truncated", "600x28x28", "470,400 bytes", "found 1,000")


def test_trailing_bytes(tmp_path):
    path = tmp_path / "labels"
    path.write_bytes(_idx_bytes(0x0C, (2,), bytes(8 + 3)))  # 2 ints = 8 bytes, 3 extra
    _raises(path, "3 trailing bytes", "2 int = 8 bytes", "found 11")


def test_corrupt_gzip(tmp_path):
    blob = bytearray(gzip.compress(_idx_bytes(0x08, (500,), bytes(range(250)) * 2)))
    blob[20:30] = b"\xff" * 10  # damage the deflate stream
    path = tmp_path / "x.gz"
    path.write_bytes(bytes(blob))
    _raises(path, "corrupt gzip stream")


def test_gzip_crc_checked(tmp_path):
    blob = bytearray(gzip.compress(_idx_bytes(0x08, (4,), b"abcd")))
    blob[-8] ^= 0xFF  # the CRC32 in the trailer
    path = tmp_path / "x.gz"
    path.write_bytes(bytes(blob))
    _raises(path, "corrupt gzip stream")


def test_truncated_gzip(tmp_path):
    blob = gzip.compress(_idx_bytes(0x08, (1000,), bytes(1000)))
    path = tmp_path / "x.gz"
    path.write_bytes(blob[: len(blob) // 2])
    _raises(path, "corrupt gzip stream", "truncated")


def test_garbage_after_gzip(tmp_path):
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(_idx_bytes(0x08, (1,), b"\x01")) + b"junk")
    _raises(path, "4 bytes of non-gzip data")


def test_missing_file_and_directory(tmp_path):
    _raises(tmp_path / "nope.gz", "no such file")
    _raises(tmp_path, "is a directory")


@pytest.mark.parametrize(
    ("array", "fragment"),
    [
        (np.zeros(3, dtype=np.int64), "int64"),
        (np.zeros(3, dtype=bool), "bool"),
        (np.zeros((1,) * 5, dtype=np.uint8), "5-D"),
        (np.zeros((), dtype=np.uint8), "0-D"),
    ],
)
def test_write_rejects_unsupported(tmp_path, array, fragment):
    with pytest.raises(IdxError, match=fragment):
        write_idx(tmp_path / "out.gz", array)
    assert list(tmp_path.iterdir()) == []


def _pair(tmp_path, images, labels):
    ip, lp = tmp_path / "imgs.gz", tmp_path / "lbls.gz"
    write_idx(ip, images)
    write_idx(lp, labels)
    return ip, lp


def test_pair_ok_and_types(tmp_path):
    images = np.arange(3 * 2 * 2, dtype=np.uint8).reshape(3, 2, 2)
    ip, lp = _pair(tmp_path, images, np.array([0, 9, 4], dtype=np.uint8))
    x, y = read_image_label_pair(ip, lp)
    assert x.dtype == np.uint8 and x.shape == (3, 2, 2)
    assert y.dtype == np.int64 and y.tolist() == [0, 9, 4]


def test_pair_count_mismatch(tmp_path):
    ip, lp = _pair(tmp_path, np.zeros((3, 2, 2), np.uint8), np.zeros(4, np.uint8))
    with pytest.raises(IdxError) as info:
        read_image_label_pair(ip, lp)
    msg = str(info.value)
    assert "count mismatch" in msg and str(ip) in msg and str(lp) in msg
    assert "3 images" in msg and "4 labels" in msg


def test_pair_label_out_of_range(tmp_path):
    labels = np.array([1, 2, 12, 3, 10, 12], dtype=np.uint8)
    ip, lp = _pair(tmp_path, np.zeros((6, 2, 2), np.uint8), labels)
    fn = lambda p: read_image_label_pair(ip, p)  # noqa: E731
    _raises(lp, "3 label(s) outside [0, 10)", "first bad value 12 at index 2", call=fn)


def test_pair_wrong_kinds(tmp_path):
    ip, lp = _pair(tmp_path, np.zeros((3, 4), np.uint8), np.zeros(3, np.uint8))
    _raises(ip, "expected 3-D ubyte images", "2-D", call=lambda p: read_image_label_pair(p, lp))
    ip, lp = _pair(tmp_path, np.zeros((3, 2, 2), np.uint8), np.zeros(3, np.int32))
    _raises(lp, "expected 1-D ubyte labels", "int32", call=lambda p: read_image_label_pair(ip, p))


def test_written_files_get_umask_permissions_not_0600(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    path = write_idx(tmp_path / "p.gz", np.zeros(2, np.uint8))
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
