"""Fetch MNIST-style IDX data sets from their official mirrors, verified by MD5 (Handbook Ch. 5).

Each file is streamed to a temporary file in the destination directory, checked against the
published MD5, synced to disk and only then renamed to its final name: a failed or corrupted
download never leaves a file under the final name. Files already present with the right MD5
are skipped. The URL opener is a parameter so tests can feed real bytes through a local server.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cnnlab.data.idx import temp_file_beside

__all__ = [
    "IDX_FILE_STEMS",
    "SOURCES",
    "DownloadError",
    "Opener",
    "default_cache_dir",
    "fetch_dataset",
    "manual_instructions",
    "url_opener",
]

# Role -> file name without ".gz"; the standard names used by MNIST and Fashion-MNIST.
IDX_FILE_STEMS: dict[str, str] = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_CHUNK = 1 << 20

# (url, timeout) -> a readable binary response usable as a context manager.
Opener = Callable[[str, float], BinaryIO]
Progress = Callable[[str, int, int | None], None]


_IDX_GZ = tuple(f"{stem}.gz" for stem in IDX_FILE_STEMS.values())


@dataclass(frozen=True)
class Source:
    """Where a data set is published: mirrors (tried in order), MD5 per file, home page.

    ``files`` are the file names fetched from each mirror (by default the four IDX .gz files);
    ``manual`` describes them for hand installation (default: the four IDX files).
    """

    mirrors: tuple[str, ...]
    md5: Mapping[str, str]
    homepage: str
    files: tuple[str, ...] = _IDX_GZ
    manual: str | None = None


SOURCES: dict[str, Source] = {
    # Xiao, Rasul, Vollgraf 2017, https://github.com/zalandoresearch/fashion-mnist (README).
    "fashion-mnist": Source(
        mirrors=(
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
        ),
        md5={
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
        homepage="https://github.com/zalandoresearch/fashion-mnist",
    ),
    # LeCun et al. 1998; the mirrors torchvision uses since yann.lecun.com went offline.
    "mnist": Source(
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
        md5={
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
        homepage="http://yann.lecun.com/exdb/mnist/",
    ),
    # Krizhevsky 2009, binary version (https://www.cs.toronto.edu/~kriz/cifar.html); read by
    # cnnlab.data.cifar straight from the archive, never unpickled.
    "cifar10": Source(
        mirrors=("https://www.cs.toronto.edu/~kriz/",),
        md5={"cifar-10-binary.tar.gz": "c32a1d4ab5d03f1284b67883e8d87530"},
        homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
        files=("cifar-10-binary.tar.gz",),
        manual="the file cifar-10-binary.tar.gz (or its unpacked folder cifar-10-batches-bin)",
    ),
}


class DownloadError(RuntimeError):
    """A data set could not be fetched: offline, HTTP error, truncated or wrong checksum."""


def default_cache_dir() -> Path:
    """The per-user data cache, ``~/.cache/cnnlab/data`` (one sub-directory per data set)."""
    return Path.home() / ".cache" / "cnnlab" / "data"


def url_opener(url: str, timeout: float) -> BinaryIO:
    """Open ``url`` with urllib (http, https and file URLs)."""
    import urllib.request  # imported here: pulls in http.client and ssl, not needed at import

    request = urllib.request.Request(url, headers={"User-Agent": "cnnlab"})
    return urllib.request.urlopen(request, timeout=timeout)


def manual_instructions(name: str, dest_dir: str | os.PathLike[str] | None = None) -> str:
    """How to install ``name`` by hand: which files, where to put them, where to get them."""
    dest = Path(dest_dir) if dest_dir is not None else default_cache_dir() / name
    source = SOURCES.get(name)
    what = source.manual if source is not None and source.manual else None
    what = what or f"the four files {', '.join(_IDX_GZ)} (gzip or unpacked)"
    text = (
        f"To install {name} by hand, copy {what} into the "
        f"directory {dest} (or into any directory DIR and pass --data-dir DIR or set "
        "CNNLAB_DATA=DIR)"
    )
    if source is not None:
        text += (
            f". Download them on a machine with internet from {source.mirrors[0]} "
            f"(see {source.homepage}), or run `cnnlab data fetch {name}` where there is network."
        )
    return text


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _is_network_error(exc: BaseException) -> bool:
    """True for 'could not reach the server' (DNS, refused, timeout), False for HTTP errors."""
    import urllib.error

    if isinstance(exc, urllib.error.HTTPError):  # the server answered, e.g. 404
        return False
    return isinstance(exc, (urllib.error.URLError, TimeoutError, ConnectionError))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, DownloadError):
        return str(exc)
    reason = getattr(exc, "reason", None)  # URLError wraps the socket error in .reason
    return f"{type(exc).__name__}: {reason if reason is not None else exc}"


@dataclass(frozen=True)
class _Job:
    """One fetch: what to get, where to put it, and how to open URLs."""

    name: str
    dest: Path
    opener: Opener
    timeout: float
    progress: Progress | None

    def stream(self, url: str, out: BinaryIO, fname: str) -> str:
        """Copy ``url`` into ``out``; return the MD5 of the bytes; raise on a short body."""
        from http.client import IncompleteRead

        digest = hashlib.md5(usedforsecurity=False)
        done, total = 0, None
        try:
            with self.opener(url, self.timeout) as response:
                length = getattr(response, "headers", {}).get("Content-Length")
                total = int(length) if length is not None else None
                while block := response.read(_CHUNK):
                    out.write(block)
                    digest.update(block)
                    done += len(block)
                    if self.progress is not None:
                        self.progress(fname, done, total)
        except IncompleteRead as exc:  # the server closed the connection early
            done += len(exc.partial)
            expected = f" of the {total:,} announced" if total is not None else ""
            raise DownloadError(
                f"truncated: the connection closed after {done:,} bytes{expected}"
            ) from None
        if total is not None and done != total:
            raise DownloadError(
                f"truncated: the connection closed after {done:,} bytes of the {total:,} announced"
            )
        return digest.hexdigest()

    def fetch_one(self, url: str, fname: str, expected_md5: str) -> None:
        """Download ``url`` via a temporary file; verify its MD5; rename it into place."""
        final = self.dest / fname
        fd, tmp = temp_file_beside(final)
        try:
            with os.fdopen(fd, "wb") as out:
                found = self.stream(url, out, fname)
                out.flush()
                os.fsync(out.fileno())  # the bytes are on disk before the name points at them
            if found != expected_md5:
                raise DownloadError(
                    f"checksum mismatch for {fname}: expected MD5 {expected_md5}, found {found}; "
                    "the download was discarded"
                )
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)

    def fetch_file(self, fname: str, mirrors: Sequence[str], expected_md5: str) -> None:
        """Try each mirror in turn; raise a DownloadError describing every failure."""
        failures: list[tuple[str, BaseException]] = []
        for mirror in mirrors:
            url = mirror.rstrip("/") + "/" + fname
            try:
                self.fetch_one(url, fname, expected_md5)
                return
            except Exception as exc:  # urllib / http.client / socket / checksum: next mirror
                failures.append((url, exc))
        tried = "; ".join(f"{url}: {_describe(exc)}" for url, exc in failures)
        if all(_is_network_error(exc) for _, exc in failures):
            raise DownloadError(
                f"could not download {self.name}: no network connection, the mirrors could not "
                f"be reached ({tried}). {manual_instructions(self.name, self.dest)}"
            )
        raise DownloadError(f"could not download {fname} from any mirror: {tried}")


def fetch_dataset(
    name: str,
    dest_dir: str | os.PathLike[str] | None = None,
    *,
    mirrors: Sequence[str] | None = None,
    timeout: float = 30,
    checksums: Mapping[str, str] | None = None,
    opener: Opener | None = None,
    progress: Progress | None = None,
) -> Path:
    """Download the files of ``name`` (four IDX .gz files, or one archive) into ``dest_dir``.

    Args:
        name: ``"fashion-mnist"``, ``"mnist"`` or ``"cifar10"``.
        dest_dir: target directory (default ``default_cache_dir() / name``); created if needed.
        mirrors: base URLs to try in order instead of the official ones.
        timeout: socket timeout in seconds per request.
        checksums: MD5 per file name instead of the published ones (for private mirrors).
        opener: ``(url, timeout) -> response``; defaults to :func:`url_opener` (urllib).
        progress: called as ``progress(file_name, bytes_done, bytes_total_or_None)``.

    Raises:
        DownloadError: unknown name, no network (with manual-install instructions), HTTP
            error, truncated download or MD5 mismatch; no unverified file is ever kept.
    """
    if name not in SOURCES:
        raise DownloadError(f"unknown data set {name!r} for download; known: {', '.join(SOURCES)}")
    source = SOURCES[name]
    dest = Path(dest_dir) if dest_dir is not None else default_cache_dir() / name
    md5s = dict(source.md5 if checksums is None else checksums)
    missing = [f for f in source.files if f not in md5s]
    if missing:
        raise DownloadError(f"no MD5 checksum given for {', '.join(missing)}")
    created = not dest.exists()
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"cannot create the destination directory {dest}: {exc}") from None
    job = _Job(name, dest, opener or url_opener, timeout, progress)
    try:
        for fname in source.files:
            if (dest / fname).is_file() and _md5(dest / fname) == md5s[fname]:
                continue  # already fetched and verified
            job.fetch_file(fname, mirrors or source.mirrors, md5s[fname])
    except BaseException:
        if created and not any(dest.iterdir()):
            dest.rmdir()  # leave no empty directory behind a failed first fetch
        raise
    return dest
