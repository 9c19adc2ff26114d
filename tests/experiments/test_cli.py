"""``cnnlab experiments list|run|book`` in-process, at the hidden smoke scale (seconds)."""

from __future__ import annotations

import json

import pytest

from cnnlab.cli.main import main
from cnnlab.experiments import load_all
from cnnlab.reports.html_page import esc

TREND = ["xor_needs_hidden_layer", "shuffle_vs_sorted", "tukey_outliers"]
RESULT_KEYS = {
    "name", "section", "kind", "claim", "runs", "measurement", "settings", "seeds",
    "measured", "verdict", "reason", "parts", "wall_seconds", "command", "hardware", "scale",
}  # fmt: skip


def test_list_prints_one_line_per_experiment(capsys):
    assert main(["experiments", "list"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    reg = load_all()
    assert len(lines) == len(reg)
    names = [line.split()[0] for line in lines]
    assert sorted(names) == reg.names()
    first = lines[names.index("conv_worked_example")]
    assert "§2.3.1" in first and " exact " in first and "instant" in first and "27" in first
    trend = lines[names.index("relu_converges_faster")]
    assert " trend " in trend and "min" in trend
    assert main(["experiments", "list", "--kind", "exact", "--json"]) == 0
    data = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {d["kind"] for d in data} == {"exact"} and len(data) == 35


@pytest.fixture(scope="module")
def smoke_out(tmp_path_factory):
    """Three trend experiments and one exact check run once at the smoke scale."""
    out = tmp_path_factory.mktemp("experiments")
    argv = ["experiments", "run", *TREND, "conv_worked_example", "--smoke", "--out", str(out)]
    assert main(argv) == 0
    return out


def test_run_writes_result_and_page(smoke_out):
    for name in [*TREND, "conv_worked_example"]:
        result = json.loads((smoke_out / name / "result.json").read_text())
        assert set(result) >= RESULT_KEYS, RESULT_KEYS - set(result)
        assert result["verdict"] in ("reproduced", "not reproduced", "inconclusive")
        assert result["scale"] == "smoke" and result["command"].startswith("cnnlab experiments")
        page = (smoke_out / name / "report.html").read_text()
        assert esc(result["claim"]) in page and "Content-Security-Policy" in page
        assert "http://" not in page and "https://" not in page  # self-contained
    xor = json.loads((smoke_out / "xor_needs_hidden_layer" / "result.json").read_text())
    assert xor["seeds"] == [0] and set(xor["measured"]["per_seed"]) == {"linear", "mlp"}
    assert (
        smoke_out / "shuffle_vs_sorted" / "runs" / "shuffled" / "seed0" / "config.yaml"
    ).is_file()
    shuffle = (smoke_out / "shuffle_vs_sorted" / "report.html").read_text()
    assert shuffle.count("data:image/png;base64,") == 2  # bars + learning curves


def test_run_reuses_and_refuses_other_settings(smoke_out, capsys):
    argv = ["experiments", "run", "tukey_outliers", "--smoke", "--out", str(smoke_out)]
    assert main(argv) == 0
    assert "already finished" in capsys.readouterr().err
    assert main([*argv, "--seeds", "2"]) == 2
    assert "other settings" in capsys.readouterr().err


def test_book_from_results(smoke_out, tmp_path, capsys):
    md = tmp_path / "book" / "experiments.md"
    assert main(["experiments", "book", str(smoke_out), "--out", str(md)]) == 0
    text = md.read_text()
    for name in [*TREND, "conv_worked_example"]:
        assert f"`{name}`" in text
    assert "QUICK RESULTS" in text and "How verdicts are computed" in text
    assert text.index("xor_needs_hidden_layer") < text.index("tukey_outliers")
    missing = [n for n in load_all().names() if n not in {*TREND, "conv_worked_example"}]
    line = next(ln for ln in text.splitlines() if ln.startswith("Not run yet"))
    assert line.startswith(f"Not run yet ({len(missing)}):")
    assert all(n in line for n in missing) and "tukey_outliers" not in line
    html = md.with_suffix(".html").read_text()
    assert "data:image/png;base64," in html and "tukey_outliers" in html


def test_bad_input_is_a_clear_error(tmp_path, capsys):
    assert main(["experiments", "run", "no_such_claim", "--smoke", "--out", str(tmp_path)]) == 2
    assert "unknown experiment 'no_such_claim'" in capsys.readouterr().err
    assert main(["experiments", "book", str(tmp_path)]) == 2
    assert "no experiment results" in capsys.readouterr().err
    argv = ["experiments", "run", "tukey_outliers", "--smoke", "--seeds", "0", "--out", "x"]
    assert main(argv) == 2
    assert "--seeds" in capsys.readouterr().err
