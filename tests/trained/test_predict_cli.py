"""``cnnlab predict``: every input kind of the issue, output formats, failures, exit status."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.cli.main import main
from cnnlab.trained.run import load


def predict(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["predict", *map(str, argv), "--no-progress"])
    out, err = capsys.readouterr()
    return code, out, err


def probs_of(out: str) -> dict[str, list[float]]:
    """JSON Lines output -> {input: the top-k probabilities} (top-k = all classes)."""
    rows = [json.loads(line) for line in out.splitlines()]
    return {r["input"]: [t["prob"] for t in r["top_k"]] for r in rows}


def test_exif_16bit_palette_rgba_cmyk_files(runs, tmp_path, capsys):
    rgb, grey = load(runs["rgb"]), load(runs["grey"])
    colour = rgb.dataset().test_images[0].permute(1, 2, 0).numpy()  # (12, 12, 3)
    big = np.kron(colour, np.ones((4, 4, 1), np.uint8))  # 48x48: JPEG keeps it close
    Image.fromarray(big).save(tmp_path / "upright.jpg", quality=95)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways, shown upright
    sideways = Image.fromarray(big).transpose(Image.Transpose.ROTATE_90)
    sideways.save(tmp_path / "phone.jpg", quality=95, exif=exif)
    Image.fromarray(colour).quantize(64).save(tmp_path / "palette.png")
    rgba = np.concatenate([colour, np.full((12, 12, 1), 128, np.uint8)], axis=-1)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "half.png")
    Image.fromarray(colour).convert("CMYK").save(tmp_path / "print.jpg", quality=100)
    code, out, _ = predict(capsys, runs["rgb"], tmp_path, "--top-k", 4, "--format", "jsonl")
    assert code == 0
    got = {k.rsplit("/", 1)[1]: v for k, v in probs_of(out).items()}
    labels = {r["input"].rsplit("/", 1)[1]: r["label"] for r in map(json.loads, out.splitlines())}
    assert labels["phone.jpg"] == labels["upright.jpg"]
    assert np.abs(np.array(got["phone.jpg"]) - got["upright.jpg"]).max() < 0.02

    def same_as(name: str, pixels: np.ndarray) -> None:
        want = rgb.predict(pixels, top_k=4)[0]
        assert labels[name] == want.label, name
        assert np.allclose(got[name], want.probs, atol=1e-5), name

    with Image.open(tmp_path / "palette.png") as im:
        same_as("palette.png", np.asarray(im.convert("RGB")))  # the palette's colours
    composited = (colour.astype(np.uint32) * 128 + 127) // 255  # on the default black
    same_as("half.png", composited.astype(np.uint8))
    with Image.open(tmp_path / "print.jpg") as im:
        same_as("print.jpg", np.asarray(im.convert("RGB")))
    # 16-bit grey PNG: exactly the 8-bit image's answer.
    g = grey.dataset().test_images[0, 0].numpy()
    Image.fromarray(g).save(tmp_path / "eight.png")
    Image.fromarray(g.astype(np.uint16) * 257).save(tmp_path / "sixteen.png")
    code, out, _ = predict(capsys, runs["grey"], tmp_path / "eight.png", tmp_path / "sixteen.png",
                           "--top-k", 4, "--format", "jsonl")  # fmt: skip
    eight, sixteen = probs_of(out).values()
    assert code == 0 and eight == sixteen


def test_a_folder_mixing_good_and_bad_files(runs, tmp_path, capsys):
    grey = load(runs["grey"])
    images = grey.dataset().test_images[:3, 0].numpy()
    for i, a in enumerate(images):
        Image.fromarray(a).save(tmp_path / f"good{i}.png")
    (tmp_path / "text.png").write_text("not an image")
    (tmp_path / "zero.jpg").write_bytes(b"")
    np.save(tmp_path / "wrong.npy", np.zeros((2, 5, 5), np.uint8))
    np.save(tmp_path / "right.npy", images)
    out_file = tmp_path / "out" / "results.csv"
    out_file.parent.mkdir()
    code, out, err = predict(capsys, runs["grey"], tmp_path, "--out", out_file)
    assert code == 1 and out == ""  # some inputs failed: exit status 1, results still written
    rows = list(csv.DictReader(io.StringIO(out_file.read_text())))
    by_name = {r["input"].rsplit("/", 1)[1]: r for r in rows}
    want = grey.predict(images).labels
    for i in range(3):
        assert by_name[f"good{i}.png"]["label_1"] == want[i]
        assert by_name[f"right.npy[{i}]"]["label_1"] == want[i]
    assert "UnidentifiedImageError" in by_name["text.png"]["error"]
    assert by_name["zero.jpg"]["error"] == "OSError: empty file (0 bytes)"
    assert "expects grey 1x12x12 images; got shape (2, 5, 5)" in by_name["wrong.npy"]["error"]
    assert list(rows[0]) == ["input", "label_1", "prob_1", "label_2", "prob_2", "label_3",
                             "prob_3", "error"]  # fmt: skip
    assert "6 image(s) read, 3 failed" in err and "failed: " + str(tmp_path / "zero.jpg") in err
    assert "traceback" not in err.lower()


def test_on_error_fail_stops_at_the_first_bad_input_and_writes_nothing(runs, tmp_path, capsys):
    Image.new("L", (12, 12), 9).save(tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes(b"")
    out_file = tmp_path / "results.json"
    code, out, err = predict(capsys, runs["grey"], tmp_path, "--on-error", "fail", "--out",
                             out_file)  # fmt: skip
    assert code != 0 and out == "" and not out_file.exists()
    assert f"cnnlab: error: {tmp_path / 'b.png'}: OSError: empty file" in err
    assert not list(tmp_path.glob(".*tmp"))  # no temporary file left behind


def test_formats(runs, tmp_path, capsys):
    arrays = load(runs["grey"]).dataset().test_images[:4, 0].numpy()
    np.save(tmp_path / "four.npy", arrays)
    outs = {}
    for fmt in ("csv", "json", "jsonl", "md"):
        code, outs[fmt], _ = predict(capsys, runs["grey"], tmp_path / "four.npy", "--format",
                                     fmt, "--top-k", 2)  # fmt: skip
        assert code == 0
    doc = json.loads(outs["json"])
    assert doc["classes"] == ["class0", "class1", "class2", "class3"] and doc["top_k"] == 2
    labels = [r["label"] for r in doc["predictions"]]
    assert [json.loads(line)["label"] for line in outs["jsonl"].splitlines()] == labels
    assert [r["label_1"] for r in csv.DictReader(io.StringIO(outs["csv"]))] == labels
    md = outs["md"].splitlines()
    assert md[0] == "| input | label | prob | top-k | error |" and len(md) == 6
    assert f"| {tmp_path / 'four.npy'}[3] | {labels[3]} |" in md[-1]
    out_file = tmp_path / "r.jsonl"  # the format follows the --out suffix
    code, out, err = predict(capsys, runs["grey"], tmp_path / "four.npy", "--out", out_file,
                             "--top-k", 2)  # fmt: skip
    assert code == 0 and out == "" and out_file.read_text() == outs["jsonl"]
    assert f"wrote {out_file} (jsonl, 4 rows)" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--top-k", "0"], "--top-k must be >= 1"),
        (["--out", "/nonexistent/dir/x.csv"], "the folder /nonexistent/dir does not exist"),
        (["--tta", "spin"], "--tta spin: unknown TTA view 'spin'"),
    ],
)
def test_bad_arguments_fail_cleanly(runs, tmp_path, capsys, args, message):
    Image.new("L", (12, 12), 9).save(tmp_path / "a.png")
    code, out, err = predict(capsys, runs["grey"], tmp_path / "a.png", *args)
    assert code == 2 and out == "" and message in err and "Traceback" not in err


def test_tta_and_the_summary(runs, tmp_path, capsys):
    images = load(runs["rgb"]).dataset().test_images[:5]
    np.save(tmp_path / "x.npy", images.numpy())
    code, out, err = predict(capsys, runs["rgb"], tmp_path / "x.npy", "--tta", "flip",
                             "--format", "jsonl", "--top-k", 4)  # fmt: skip
    assert code == 0
    want = load(runs["rgb"]).predict(images, tta="flip", top_k=4)
    got = [json.loads(line) for line in out.splitlines()]
    assert [r["label"] for r in got] == want.labels
    assert torch.allclose(torch.tensor([[t["prob"] for t in r["top_k"]] for r in got]),
                          want.top_probs, atol=1e-5)  # fmt: skip
    assert "never trained with hflip" in err  # the synthetic run had no flips
    assert "5 image(s) read, 0 failed" in err and "predicted: " in err
