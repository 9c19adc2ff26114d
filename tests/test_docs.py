"""The runnable examples of docs/practice.md run as written (one per handbook chapter)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "practice.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def test_every_chapter_has_an_example():
    text = DOC.read_text(encoding="utf-8")
    for chapter in range(5, 13):
        assert f"## Chapter {chapter} " in text
    assert len(_python_blocks()) >= 10


@pytest.mark.slow
def test_examples_run(capsys):
    namespace: dict = {}
    for block in _python_blocks():
        exec(compile(block, str(DOC), "exec"), namespace)
    out = capsys.readouterr().out
    assert "fine-tuned on 4 classes" in out and "balanced accuracy" in out
