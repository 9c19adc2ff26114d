"""``cnnlab list``: every selectable component with the config key that selects it."""

from __future__ import annotations

import pytest

from cnnlab.cli.inspect_cmd import LISTABLE
from cnnlab.cli.main import main
from cnnlab.config import build_config


def listing(capsys, kind: str) -> list[list[str]]:
    assert main(["list", kind]) == 0
    return [line.split(None, 2) for line in capsys.readouterr().out.splitlines()]


def test_mixup_cutmix_and_warmup_are_listed_with_their_keys(capsys):
    assert main(["list", "mix"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["cutmix", "mixup"]
    assert "loss.mix={name: mixup}" in lines[1] and "(Zhang et al. 2018)" in lines[1]
    warmup = [r for r in listing(capsys, "schedules") if r[0] == "warmup"]
    assert len(warmup) == 1 and warmup[0][1] == "schedule.warmup_epochs=N"


@pytest.mark.parametrize("kind", sorted(set(LISTABLE) - {"compression"}))
def test_the_keys_shown_select_the_component(kind, capsys):
    assert main(["list", kind]) == 0
    for line in capsys.readouterr().out.splitlines()[:3]:
        name = line.split()[0]
        key = line[len(name) :].strip().split("  ")[0].replace("=N", "=1")
        tree = {"model": {"name": "cnn2"}} if kind == "activations" else {}
        build_config(tree, [key])  # a valid config: the key is real and selects the name
        assert name in key or kind == "schedules"


def test_list_without_a_kind_shows_every_kind(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for kind in LISTABLE:
        assert f"\n{kind}:\n" in f"\n{out}"
    assert "data.dataset=image_folder" in out and "compress steps: [{name: int8}]" in out
