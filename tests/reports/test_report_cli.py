"""``cnnlab report DIR [--out FILE]``, in-process."""

from __future__ import annotations

from cnnlab.cli.main import main


def test_report_on_a_run_prints_the_page_path(run_dir, capsys):
    (run_dir / "report.html").unlink(missing_ok=True)
    assert main(["report", str(run_dir)]) == 0
    out = capsys.readouterr().out.strip().splitlines()[-1]
    assert out == str(run_dir / "report.html")
    assert (run_dir / "report.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_report_on_a_compare_dir_with_out(compare_dir, tmp_path, capsys):
    target = tmp_path / "pages" / "study.html"
    target.parent.mkdir()
    assert main(["report", str(compare_dir), "--out", str(target)]) == 0
    assert capsys.readouterr().out.strip() == str(target)
    assert "cnnlab comparison: tiny on synthetic" in target.read_text(encoding="utf-8")
    assert not (compare_dir / "report.html").exists()


def test_report_regenerates_without_training(run_dir, capsys):
    before = (run_dir / "checkpoint.safetensors").stat().st_mtime_ns
    assert main(["report", str(run_dir)]) == 0
    assert main(["report", str(run_dir)]) == 0  # rebuilding over an existing page is fine
    assert (run_dir / "checkpoint.safetensors").stat().st_mtime_ns == before


def test_report_warns_about_damaged_optional_files(run_dir, capsys):
    (run_dir / "examples.safetensors").write_bytes(b"junk")
    assert main(["report", str(run_dir)]) == 0
    assert "warning: Could not read the examples" in capsys.readouterr().err


def test_report_on_a_directory_that_is_no_run(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cnnlab: error: ")
    assert str(tmp_path) in err and "results.json" in err and "metrics.json" in err
    assert "Traceback" not in err


def test_report_on_a_corrupt_run(run_dir, capsys):
    (run_dir / "metrics.json").write_text("{")
    assert main(["report", str(run_dir)]) == 2
    assert "metrics.json: not valid JSON" in capsys.readouterr().err
