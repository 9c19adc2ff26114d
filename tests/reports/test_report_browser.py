"""Render a comparison page in headless Chromium: every picture decodes, the page draws.

Skipped when Chromium is absent (install it with ``apt-get install chromium``), unless
``CNNLAB_REQUIRE_BROWSER=1`` is set, as in CI, where a missing browser is a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from cnnlab.reports.html import build_compare_report

pytestmark = pytest.mark.browser

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    for path in ("/usr/bin/chromium", "/usr/bin/chromium-browser"):
        if Path(path).is_file():
            return path
    return None


@pytest.fixture
def chromium() -> str:
    exe = find_chromium()
    if exe is None:
        message = (
            "headless Chromium not found (looked for chromium, chromium-browser, "
            "/usr/bin/chromium); install it with `apt-get install chromium`"
        )
        if os.environ.get("CNNLAB_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{message} (CNNLAB_REQUIRE_BROWSER=1 requires it)")
        pytest.skip(message)
    return exe


def render(exe: str, page: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [exe, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args, page.as_uri()]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"Chromium did not finish within 60 s: {' '.join(cmd)}")
    assert done.returncode == 0, f"Chromium failed ({done.returncode}): {done.stderr[-2000:]}"
    return done


def test_every_picture_of_a_compare_page_decodes(chromium, compare_dir, tmp_path):
    page = build_compare_report(compare_dir)
    dom = render(chromium, page, tmp_path, "--dump-dom").stdout
    assert '<section id="results"' in dom and '<th class="num">test acc</th>' in dom
    found = re.search(r'data-images-ok="(\d+)/(\d+)"', dom)
    assert found, "the image check did not run (no data-images-ok on <body>)"
    ok, total = map(int, found.groups())
    assert total > 0 and ok == total, f"{total - ok} of {total} pictures failed to decode"
    assert total == dom.count("<img")


def test_compare_page_screenshot(chromium, compare_dir, tmp_path):
    page = build_compare_report(compare_dir)
    shot = tmp_path / "report.png"
    render(chromium, page, tmp_path, f"--screenshot={shot}", "--window-size=1280,2400")
    assert shot.is_file(), "Chromium wrote no screenshot"
    assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert shot.stat().st_size > 10_000  # a blank page would compress to a few kB
