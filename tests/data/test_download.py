"""Downloads through a real local HTTP server and file:// URLs: success, skip, fallback,
checksum mismatch, truncated stream, no network; failures leave no file behind."""

from __future__ import annotations

import hashlib
import io
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from cnnlab.data.datasets import default_cache_dir, load_dataset
from cnnlab.data.download import SOURCES, DownloadError, fetch_dataset
from cnnlab.data.idx import write_idx

NAMES = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
]
REAL = Path("/work/shared/data/fashion-mnist")


@pytest.fixture(scope="module")
def payload(tmp_path_factory) -> dict[str, bytes]:
    """Four small, valid IDX .gz files (the bytes a mirror serves)."""
    src = tmp_path_factory.mktemp("src")
    rng = np.random.default_rng(0)
    arrays = [
        rng.integers(0, 256, (30, 5, 5), dtype=np.uint8),
        np.arange(30, dtype=np.uint8) % 10,
        rng.integers(0, 256, (10, 5, 5), dtype=np.uint8),
        np.arange(10, dtype=np.uint8),
    ]
    for name, arr in zip(NAMES, arrays, strict=True):
        write_idx(src / name, arr)
    return {name: (src / name).read_bytes() for name in NAMES}


@pytest.fixture(scope="module")
def md5s(payload) -> dict[str, str]:
    return {name: hashlib.md5(data).hexdigest() for name, data in payload.items()}


@pytest.fixture(scope="module")
def server(payload):
    """A mirror on 127.0.0.1; the first path segment picks the behaviour:
    /ok/ serves the file, /corrupt/ flips one byte, /trunc/ closes half-way, /404/ is missing."""
    requests: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            mode, _, name = self.path.strip("/").partition("/")
            if mode == "404" or name not in payload:
                self.send_error(404)
                return
            body = bytearray(payload[name])
            if mode == "corrupt":
                body[len(body) // 2] ^= 0xFF
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2] if mode == "trunc" else body)

        def log_message(self, *args):  # keep test output quiet
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.requests = requests
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _fetch(dest: Path, mirrors, md5s, **kw) -> Path:
    return fetch_dataset("fashion-mnist", dest, mirrors=mirrors, checksums=md5s, timeout=5, **kw)


def test_fetch_success_then_load(tmp_path, server, payload, md5s):
    seen: dict[str, tuple[int, int | None]] = {}
    dest = _fetch(
        tmp_path / "d",
        [f"{server.url}/ok/"],
        md5s,
        progress=lambda f, done, total: seen.__setitem__(f, (done, total)),
    )
    assert dest == tmp_path / "d"
    assert sorted(p.name for p in dest.iterdir()) == sorted(NAMES)  # no temp files left
    for name in NAMES:
        assert (dest / name).read_bytes() == payload[name]
        assert seen[name] == (len(payload[name]), len(payload[name]))
    ds = load_dataset("mnist", dest)
    assert ds.train_images.shape == (30, 1, 5, 5)


def test_present_files_are_skipped_stale_ones_replaced(tmp_path, server, payload, md5s):
    dest = _fetch(tmp_path / "d", [f"{server.url}/ok/"], md5s)
    server.requests.clear()
    _fetch(dest, [f"{server.url}/ok/"], md5s)
    assert server.requests == []  # every file already there with the right MD5
    (dest / NAMES[1]).write_bytes(b"stale")
    _fetch(dest, [f"{server.url}/ok/"], md5s)
    assert server.requests == [f"/ok/{NAMES[1]}"]
    assert (dest / NAMES[1]).read_bytes() == payload[NAMES[1]]


def test_falls_back_to_next_mirror(tmp_path, server, md5s):
    server.requests.clear()
    _fetch(tmp_path / "d", [f"{server.url}/404/", f"{server.url}/ok"], md5s)
    assert server.requests[:2] == [f"/404/{NAMES[0]}", f"/ok/{NAMES[0]}"]
    assert len(list((tmp_path / "d").iterdir())) == 4


def test_checksum_mismatch_keeps_nothing(tmp_path, server, payload, md5s):
    dest = tmp_path / "d"
    dest.mkdir()
    with pytest.raises(DownloadError) as info:
        _fetch(dest, [f"{server.url}/corrupt/"], md5s)
    bad = bytearray(payload[NAMES[0]])
    bad[len(bad) // 2] ^= 0xFF
    msg = str(info.value)
    assert "checksum mismatch" in msg and NAMES[0] in msg
    assert md5s[NAMES[0]] in msg and hashlib.md5(bad).hexdigest() in msg
    assert list(dest.iterdir()) == []


def test_failure_on_one_file_keeps_the_verified_ones(tmp_path, server, md5s):
    wrong = {**md5s, NAMES[2]: "0" * 32}
    with pytest.raises(DownloadError, match=NAMES[2]):
        _fetch(tmp_path / "d", [f"{server.url}/ok/"], wrong)
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == sorted(NAMES[:2])


def test_truncated_stream(tmp_path, server, md5s):
    dest = tmp_path / "d"
    dest.mkdir()
    with pytest.raises(DownloadError, match="truncated: the connection closed after"):
        _fetch(dest, [f"{server.url}/trunc/"], md5s)
    assert list(dest.iterdir()) == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _assert_offline_message(msg: str, dest: Path) -> None:
    assert "no network connection" in msg and str(dest) in msg
    for fragment in (
        *NAMES,
        "--data-dir DIR",
        "CNNLAB_DATA=DIR",
        SOURCES["fashion-mnist"].mirrors[0],
    ):
        assert fragment in msg


def test_no_network_connection_refused(tmp_path):
    dest = tmp_path / "new" / "fashion-mnist"
    with pytest.raises(DownloadError) as info:
        _fetch(
            dest, [f"http://127.0.0.1:{_free_port()}/a/", f"http://127.0.0.1:{_free_port()}/"], None
        )
    _assert_offline_message(str(info.value), dest)
    assert not dest.exists()  # the directory this call created is removed again


def test_no_network_timeout(tmp_path):
    with socket.socket() as silent:  # accepts connections (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/"
        with pytest.raises(DownloadError) as info:
            fetch_dataset("fashion-mnist", tmp_path / "d", mirrors=[url], timeout=0.3)
    _assert_offline_message(str(info.value), tmp_path / "d")


def test_file_urls_and_default_dest(tmp_path, monkeypatch, payload, md5s):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CNNLAB_DATA", raising=False)
    src = tmp_path / "mirror"
    src.mkdir()
    for name, data in payload.items():
        (src / name).write_bytes(data)
    dest = fetch_dataset("fashion-mnist", mirrors=[src.as_uri()], checksums=md5s)
    assert dest == default_cache_dir() / "fashion-mnist"
    ds = load_dataset("fashion-mnist")  # found in the cache, not the embedded sample
    assert ds.source == str(dest) and ds.notice is None


def test_injected_opener(tmp_path, payload, md5s):
    urls = []

    def opener(url: str, timeout: float) -> io.BytesIO:
        urls.append(url)
        return io.BytesIO(payload[url.rsplit("/", 1)[1]])

    _fetch(tmp_path / "d", ["mem://x/"], md5s, opener=opener)
    assert urls == [f"mem://x/{n}" for n in NAMES]
    assert all((tmp_path / "d" / n).read_bytes() == payload[n] for n in NAMES)


def test_unknown_name(tmp_path):
    with pytest.raises(DownloadError, match=r"unknown data set 'cifar' .* fashion-mnist, mnist"):
        fetch_dataset("cifar", tmp_path)


@pytest.mark.skipif(not REAL.is_dir(), reason=f"no Fashion-MNIST copy at {REAL}")
def test_published_label_md5s_match_the_official_label_files():
    # The label files of the local copy are byte-for-byte official (its README).
    for name in ("train-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        digest = hashlib.md5((REAL / name).read_bytes()).hexdigest()
        assert SOURCES["fashion-mnist"].md5[name] == digest
