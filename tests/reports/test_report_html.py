"""The HTML pages of a run and of a comparison: content, self-containment, robustness."""

from __future__ import annotations

import base64
import json
import re
import shutil
from html.parser import HTMLParser

import numpy as np
import pytest

from cnnlab.reports.artifacts import ReportError, RunData
from cnnlab.reports.html import build_compare_report, build_report, build_run_report
from cnnlab.reports.sections import CM_TABLE_MAX, confusion_part, per_class_part
from cnnlab.viz.png import PNG_SIGNATURE

RUN_SECTIONS = ["results", "curves", "confusion", "per-class", "examples", "weights", "config",
                "environment"]  # fmt: skip


class Page(HTMLParser):
    """Collects ids, image sources, table rows and the text of a page (a real HTML parser)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.ids, self.images, self.rows, self.text, self.body = [], [], [], [], {}
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.append(a["id"])
        if tag == "img":
            self.images.append(a)
        if tag == "tr":
            self.rows.append(a.get("class", ""))
        if tag == "body":
            self.body = a

    def handle_data(self, data):
        self.text.append(data)

    @property
    def plain(self) -> str:
        return " ".join(" ".join(self.text).split())


def check_self_contained(html: str) -> Page:
    """Every picture is an embedded, decodable PNG; nothing points at the network."""
    page = Page(html)
    assert page.images, "no pictures on the page"
    for img in page.images:
        src = img["src"]
        assert src.startswith("data:image/png;base64,"), src[:40]
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG_SIGNATURE)
        assert img.get("alt")
    assert not re.search(r"https?://", html)
    assert not re.search(r"""(src|href)\s*=\s*["'](?!data:|#)""", html)
    assert "data-images-ok" in html and "naturalWidth === 0" in html
    return page


def test_run_report_of_a_cnn(run_dir):
    out = build_run_report(run_dir)
    assert out == run_dir / "report.html"
    html = out.read_text(encoding="utf-8")
    page = check_self_contained(html)
    assert all(s in page.ids for s in RUN_SECTIONS)
    text = page.plain
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert f"{100 * metrics['test_acc']:.2f} %" in text
    assert "First convolution" in text and "filters of 1×3×3" in text
    assert "Correctly classified" in text and "Misclassified" in text
    assert "class0" in text  # class names from the checkpoint
    assert "AMD" in text or "cores" in text  # the hardware/software line
    examples = [i for i in page.images if i["alt"].startswith("test image")]
    assert 0 < len(examples) <= 32
    assert not list(run_dir.glob(".*.tmp"))  # atomic write left nothing behind


def test_softmax_report_shows_one_template_per_class(softmax_dir):
    page = check_self_contained(build_report(softmax_dir).read_text(encoding="utf-8"))
    templates = [i["alt"] for i in page.images if i["alt"].startswith("weights of class")]
    assert templates == [f"weights of class class{k}" for k in range(4)]
    assert "one template per class" in page.plain
    assert "red pixels raise the class score" in page.plain


def test_rgb_run_shows_colour_filters(trained_runs, tmp_path):
    out = build_run_report(trained_runs["rgb"], out=tmp_path / "rgb.html")
    text = Page(out.read_text(encoding="utf-8")).plain
    assert "filters of 3×3×3" in text and "in colour" in text


def test_missing_optional_parts_become_notes(run_dir):
    for name in ("examples.safetensors", "history.csv", "checkpoint.safetensors", "env.json"):
        (run_dir / name).unlink()
    page = Page(build_run_report(run_dir).read_text(encoding="utf-8"))
    assert all(s in page.ids for s in RUN_SECTIONS)  # every heading is still there
    text = page.plain
    for name in ("examples.safetensors is missing", "history.csv is missing",
                 "checkpoint.safetensors is missing", "not recorded"):  # fmt: skip
        assert name in text
    assert "class0" not in text  # without the checkpoint, classes fall back to indices
    assert "true ↓ / predicted →" in text  # confusion matrix still shown from metrics.json


def test_damaged_optional_files_are_warned_about(run_dir):
    (run_dir / "examples.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{broken")
    (run_dir / "history.csv").write_text("epoch,train_loss\n1,abc\n")
    warnings = []
    html = build_run_report(run_dir, log=warnings.append).read_text(encoding="utf-8")
    assert 'class="note warn"' in html
    assert any("examples.safetensors" in w for w in warnings)
    assert any("'abc' is not a number" in w for w in warnings)


def test_nan_values_and_a_single_epoch(run_dir):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics |= {"test_loss": float("nan"), "macs": None, "epochs": 1}
    (run_dir / "metrics.json").write_text(json.dumps(metrics))  # writes a bare NaN
    history = (run_dir / "history.csv").read_text().splitlines()
    (run_dir / "history.csv").write_text("\n".join(history[:2]) + "\n")
    page = check_self_contained(build_run_report(run_dir).read_text(encoding="utf-8"))
    assert "trained for 1 epoch on" in page.plain
    assert "test loss —" in page.plain and "NaN" not in page.plain


def test_text_from_files_is_escaped(run_dir):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics["model"] = '<script>alert("x")</script>'
    metrics["dataset"] = "a & b"
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    html = build_run_report(run_dir).read_text(encoding="utf-8")
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert "a &amp; b" in html


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "no metrics.json"), ("{not json", "not valid JSON"), ("[1, 2]", "JSON object")],
)
def test_missing_or_corrupt_metrics_is_an_error(run_dir, content, message):
    if content is None:
        (run_dir / "metrics.json").unlink()
    else:
        (run_dir / "metrics.json").write_text(content)
    with pytest.raises(ReportError, match=message):
        build_run_report(run_dir)
    assert not (run_dir / "report.html").exists()


def test_many_classes_use_a_picture_and_keep_every_class_in_the_table(tmp_path):
    n = 100
    cm = np.eye(n, dtype=int) * 5 + 1
    per = [0.5] * n
    metrics = {"model": "m", "test": {"confusion": cm.tolist(), "precision": per, "recall": per,
                                      "f1": per, "balanced_acc": 0.5}}  # fmt: skip
    run = RunData(path=tmp_path, metrics=metrics, classes=[f"c{i}" for i in range(n)])
    assert n > CM_TABLE_MAX
    part = confusion_part(run)
    assert part.count("<img") == 1 and "<table" not in part
    assert per_class_part(run).count("<tr>") + per_class_part(run).count("<tr ") == n + 1
    small = RunData(path=tmp_path, metrics={"test": {"confusion": [[3, 1], [0, 4]]}},
                    classes=["cat", "dog"])  # fmt: skip
    table = confusion_part(small)
    assert "<table" in table and ">3</td>" in table and "cat → dog: 1" in table


def test_compare_report(compare_dir):
    out = build_compare_report(compare_dir)
    assert out == compare_dir / "report.html"
    html = out.read_text(encoding="utf-8")
    page = check_self_contained(html)
    for anchor in ("results", "tradeoff", "notes", "softmax-tiny-softmax", "cnn1-tiny-cnn1",
                   "command", "environment"):  # fmt: skip
        assert anchor in page.ids
    text = page.plain
    results = json.loads((compare_dir / "results.json").read_text())
    cnn = results["rows"][1]
    assert f"{100 * cnn['test_acc']:.2f} ± 1.25 %" in text  # mean ± std over two seeds
    assert "compares 2 models (softmax, cnn1) on the synthetic" in text
    assert "cnnlab compare --preset tiny --seeds 2" in text
    assert "summed over the models; wall time 12.5 s, started" in text
    assert "1 of 2 seeds" in text
    best = 0 if results["rows"][0]["test_acc"] > cnn["test_acc"] else 1
    data_rows = page.rows[1 : 1 + len(results["rows"])]  # results table rows after its header
    assert data_rows[best] == "best" and data_rows[1 - best] == ""
    assert "85% &amp; more &lt;b&gt;than&lt;/b&gt; that" in html  # notes escaped
    alts = [i["alt"] for i in page.images]
    assert "test accuracy against parameters and training time" in alts
    assert sum(a.startswith("learning curves") for a in alts) == 2
    assert sum(a.startswith("weights of class") for a in alts) == 4  # softmax templates
    assert sum(a.startswith("first-layer filters") for a in alts) == 1  # cnn1


def test_compare_report_with_a_missing_run(compare_dir):
    shutil.rmtree(compare_dir / "runs" / "cnn1")
    html = build_report(compare_dir).read_text(encoding="utf-8")
    assert "Run directory runs/cnn1/seed0 not found" in html
    assert "first-layer filters" not in html and "weights of class" in html


def test_compare_report_with_a_damaged_run(compare_dir):
    (compare_dir / "runs" / "cnn1" / "seed0" / "metrics.json").write_text("{")
    html = build_report(compare_dir).read_text(encoding="utf-8")
    assert "Cannot show this model&#x27;s run" in html and "not valid JSON" in html
    assert "weights of class" in html  # the other model is still shown


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r.pop("rows"), "'rows' must be a non-empty list"),
        (lambda r: r["rows"][0].pop("model"), r"rows\[0\] must be an object"),
        (lambda r: r["rows"][1].update(runs="runs/x"), r"rows\[1\].runs must be a list"),
        (lambda r: r.update(notes="text"), "'notes' must be a list"),
    ],
)
def test_bad_results_json_is_an_error(compare_dir, change, message):
    results = json.loads((compare_dir / "results.json").read_text())
    change(results)
    (compare_dir / "results.json").write_text(json.dumps(results))
    with pytest.raises(ReportError, match=message):
        build_report(compare_dir)


def test_build_report_names_what_a_directory_lacks(tmp_path):
    with pytest.raises(ReportError, match=r"neither a comparison \(no results.json"):
        build_report(tmp_path)
    with pytest.raises(ReportError, match="no such directory"):
        build_report(tmp_path / "absent")
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(ReportError, match="not a directory"):
        build_report(tmp_path / "f.txt")


def test_report_error_is_a_run_dir_error():
    from cnnlab.engine.rundir import RunDirError

    assert issubclass(ReportError, RunDirError)  # so the CLI prints it as a clear error


def test_cnn_run_page_has_inside_the_network(tmp_path, tiny_cfg):
    from cnnlab.reports.html import build_run_report
    from cnnlab.training.spine import run_training

    run_training(tiny_cfg(train={"epochs": 1}), tmp_path / "run", log=lambda m: None)
    html = build_run_report(tmp_path / "run").read_text()
    assert "Inside the network" in html and "Grad-CAM" in html
