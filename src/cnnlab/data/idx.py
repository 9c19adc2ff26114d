"""Reader and writer for the IDX format of MNIST-style data sets (Handbook Ch. 5-6, data pipeline).

An IDX file is a 4-byte magic number ``0x00 0x00 <type code> <number of dims>``, one
big-endian uint32 size per dimension, then the payload in C order, big-endian. The files are
usually gzip-compressed; gzip is detected by its magic bytes, not by the file name. Every
problem with a file raises :class:`IdxError`, whose message names the file and says what was
expected and what was found.
"""

from __future__ import annotations

import gzip as gzip_module
import math
import os
import secrets
import zlib
from pathlib import Path

import numpy as np

__all__ = [
    "IDX_DTYPES",
    "IdxError",
    "read_idx",
    "read_image_label_pair",
    "temp_file_beside",
    "write_idx",
]

# Type code -> (big-endian numpy dtype, IDX name).
IDX_DTYPES: dict[int, tuple[np.dtype, str]] = {
    0x08: (np.dtype(">u1"), "ubyte"),
    0x09: (np.dtype(">i1"), "sbyte"),
    0x0B: (np.dtype(">i2"), "short"),
    0x0C: (np.dtype(">i4"), "int"),
    0x0D: (np.dtype(">f4"), "float"),
    0x0E: (np.dtype(">f8"), "double"),
}
_CODE_OF_KIND = {(dt.kind, dt.itemsize): code for code, (dt, _) in IDX_DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"
_MAX_DIMS = 4


class IdxError(ValueError):
    """A file that is missing, not IDX, corrupt, or inconsistent with its header."""


def _fail(path: str | os.PathLike[str], problem: str) -> IdxError:
    return IdxError(f"{os.fspath(path)}: {problem}")


def _known_codes() -> str:
    return ", ".join(f"0x{c:02X} ({name})" for c, (_, name) in IDX_DTYPES.items())


def _gunzip(path: Path, blob: bytes) -> bytes:
    """Decompress every gzip member of ``blob``; corrupt or truncated streams raise IdxError."""
    parts: list[bytes] = []
    rest = blob
    try:
        while rest:
            dec = zlib.decompressobj(wbits=31)  # 31 = gzip header + trailer (CRC32, size) checked
            parts.append(dec.decompress(rest))
            if not dec.eof:
                raise _fail(
                    path,
                    f"corrupt gzip stream: truncated, the compressed data ({len(blob):,} bytes) "
                    "ends before the gzip end-of-stream marker",
                )
            rest = dec.unused_data
            if rest and not rest.startswith(_GZIP_MAGIC):
                if rest.strip(b"\x00"):  # zero padding after a member is legal, anything else not
                    raise _fail(
                        path,
                        f"corrupt gzip stream: {len(rest):,} bytes of non-gzip data follow the "
                        "end of the compressed stream",
                    )
                rest = b""
    except zlib.error as exc:
        raise _fail(path, f"corrupt gzip stream: {exc}") from None
    return b"".join(parts)


def _parse_header(path: Path, data: bytes) -> tuple[np.dtype, tuple[int, ...], int]:
    """Validate the magic number and sizes; return (dtype, shape, header length)."""
    if len(data) < 4:
        raise _fail(
            path,
            f"too short for an IDX file: need a 4-byte magic number, found {len(data)} byte(s)",
        )
    magic = data[:4].hex()
    if data[0] != 0 or data[1] != 0:
        raise _fail(
            path,
            f"not an IDX file: the magic number must start with two zero bytes, found 0x{magic}",
        )
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        raise _fail(
            path,
            f"unknown IDX data type code 0x{code:02X} in magic number 0x{magic}; "
            f"expected one of {_known_codes()}",
        )
    if not 1 <= ndim <= _MAX_DIMS:
        raise _fail(
            path, f"magic number 0x{magic} declares {ndim} dimensions; expected 1 to {_MAX_DIMS}"
        )
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise _fail(
            path,
            f"truncated header: {ndim} dimensions need {header_len} header bytes, "
            f"found {len(data)}",
        )
    shape = tuple(int(s) for s in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    return IDX_DTYPES[code][0], shape, header_len


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (gzip or raw) into a native-endian, writable numpy array.

    Raises:
        IdxError: missing file, bad magic number, unknown type, corrupt gzip, or a payload
            whose length differs from the size the header declares.
    """
    path = Path(path)
    if not path.is_file():
        what = "is a directory, not a file" if path.is_dir() else "no such file"
        raise _fail(path, what)
    blob = path.read_bytes()
    data = _gunzip(path, blob) if blob[:2] == _GZIP_MAGIC else blob
    dtype, shape, header_len = _parse_header(path, data)
    expected = math.prod(shape) * dtype.itemsize
    found = len(data) - header_len
    if found != expected:
        dims = "x".join(str(s) for s in shape)
        what = "truncated" if found < expected else f"{found - expected:,} trailing bytes"
        raise _fail(
            path,
            f"{what}: header declares {dims} {IDX_DTYPES[data[2]][1]} = {expected:,} bytes of "
            f"data, found {found:,}",
        )
    arr = np.frombuffer(data, dtype=dtype, count=math.prod(shape), offset=header_len)
    # One copy: big-endian -> native order, and a writable array that torch.from_numpy accepts.
    return arr.astype(dtype.newbyteorder("="), copy=True).reshape(shape)


def _encode(array: np.ndarray) -> bytes:
    """Serialise ``array`` as IDX bytes (header + big-endian payload)."""
    arr = np.asarray(array)
    code = _CODE_OF_KIND.get((arr.dtype.kind, arr.dtype.itemsize))
    if code is None:
        raise IdxError(
            f"cannot write dtype {arr.dtype} as IDX; supported: uint8, int8, int16, int32, "
            "float32, float64"
        )
    if not 1 <= arr.ndim <= _MAX_DIMS:
        raise IdxError(f"cannot write a {arr.ndim}-D array as IDX; expected 1 to {_MAX_DIMS} dims")
    if any(s >= 2**32 for s in arr.shape):
        raise IdxError(f"cannot write shape {arr.shape} as IDX: sizes must fit in uint32")
    header = bytes([0, 0, code, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    return header + np.ascontiguousarray(arr, dtype=IDX_DTYPES[code][0]).tobytes()


def write_idx(
    path: str | os.PathLike[str],
    array: np.ndarray,
    gzip: bool | None = None,
    *,
    compresslevel: int = 9,
) -> Path:
    """Write ``array`` as an IDX file, gzip-compressed if ``gzip`` (default: name ends in .gz).

    The file is written to a temporary name in the same directory and renamed into place, so
    a failure never leaves a half-written file; gzip output is byte-for-byte reproducible
    (no timestamp, no embedded file name).
    """
    path = Path(path)
    payload = _encode(array)
    if gzip if gzip is not None else path.suffix == ".gz":
        payload = gzip_module.compress(payload, compresslevel=compresslevel, mtime=0)
    fd, tmp = temp_file_beside(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def temp_file_beside(path: Path) -> tuple[int, Path]:
    """Create ``.<name>.<random>.part`` next to ``path``; return (open fd, its path).

    Unlike tempfile.mkstemp (always mode 0600) the file gets the usual permissions (0666 minus
    the umask), so data files renamed into place stay readable by others.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.part"
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary file next to {path}")


def read_image_label_pair(
    images_path: str | os.PathLike[str],
    labels_path: str | os.PathLike[str],
    num_classes: int = 10,
) -> tuple[np.ndarray, np.ndarray]:
    """Read matching image and label files: uint8 images (N, H, W), int64 labels (N,).

    Checks that the images are 3-D ubyte, the labels 1-D ubyte, the counts agree and every
    label lies in ``[0, num_classes)``.
    """
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise _fail(
            images_path,
            f"expected 3-D ubyte images (N, H, W), found {images.ndim}-D "
            f"{images.dtype} with shape {images.shape}",
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise _fail(
            labels_path,
            f"expected 1-D ubyte labels (N,), found {labels.ndim}-D "
            f"{labels.dtype} with shape {labels.shape}",
        )
    if len(images) != len(labels):
        raise IdxError(
            f"count mismatch: {os.fspath(images_path)} holds {len(images):,} images but "
            f"{os.fspath(labels_path)} holds {len(labels):,} labels"
        )
    bad = np.flatnonzero(labels >= num_classes)  # uint8 labels cannot be negative
    if bad.size:
        first = int(bad[0])
        raise _fail(
            labels_path,
            f"{bad.size:,} label(s) outside [0, {num_classes}): first bad value "
            f"{int(labels[first])} at index {first:,} (largest {int(labels.max())})",
        )
    return images, labels.astype(np.int64)
