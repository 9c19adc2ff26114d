"""Prediction agrees with evaluation, image for image: PNG files through ``cnnlab predict``,
the exported ONNX model through examples/onnx_predict.py (no torch), ``run.predict`` on arrays."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnlab.cli.main import main
from cnnlab.data.folder import scan_folder
from cnnlab.evaluation.evaluate import evaluate
from cnnlab.trained.run import load

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "onnx_predict.py"


def onnx_example():
    spec = importlib.util.spec_from_file_location("onnx_predict", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def eval_labels(run, images, labels) -> list[str]:
    """Per-image top-1 of the evaluation path (``TrainedRun.loader`` + ``evaluate``)."""
    res = evaluate(run.model, run.loader(images, labels, batch_size=50),
                   num_classes=len(run.classes), autocast=run.runtime.autocast,
                   keep_outputs=True)  # fmt: skip
    return [run.classes[i] for i in res.probs.argmax(1).tolist()]


def cli_labels(capsys, run_dir: Path, *inputs: Path) -> dict[str, str]:
    code = main(["predict", str(run_dir), *map(str, inputs), "--no-progress", "--top-k", "1"])
    out = capsys.readouterr().out
    assert code == 0
    return {r["input"]: r["label_1"] for r in csv.DictReader(io.StringIO(out))}


def eval_accuracy(capsys, run_dir: Path) -> float:
    assert main(["eval", str(run_dir), "--json"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])["test_acc"]


def test_png_files_onnx_and_arrays_agree_with_eval(runs, tmp_path, capsys):
    run = load(runs["grey"])
    ds = run.dataset()
    want = eval_labels(run, ds.test_images, ds.test_labels)
    paths = []
    for i, img in enumerate(ds.test_images[:, 0].numpy()):
        paths.append(tmp_path / "png" / f"{i:03d}.png")
        paths[-1].parent.mkdir(exist_ok=True)
        Image.fromarray(img).save(paths[-1])
    got = cli_labels(capsys, runs["grey"], tmp_path / "png")
    assert [got[str(p)] for p in paths] == want  # image for image
    truth = [run.classes[i] for i in ds.test_labels.tolist()]
    acc = np.mean([g == t for g, t in zip(want, truth, strict=True)])
    assert eval_accuracy(capsys, runs["grey"]) == pytest.approx(acc, abs=1e-12)
    assert run.predict(ds.test_images.numpy()[:, 0]).labels == want  # raw (N, H, W) arrays
    pytest.importorskip("onnxruntime", reason="the ONNX check needs onnxruntime")
    pytest.importorskip("onnx", reason="ONNX export needs pip install 'cnnlab[export]'")
    model = tmp_path / "model.onnx"
    assert main(["export", str(runs["grey"]), "--out", str(model)]) == 0
    capsys.readouterr()
    onnx_top1 = [top[0][0] for _, top in onnx_example().classify(str(model), paths)]
    assert onnx_top1 == want


def test_a_folder_run_predicts_its_own_test_files_as_eval_does(runs, tmp_path, capsys):
    """Centre crop of wide and tall files, transparency on a white background, mode auto:
    prediction decodes the files exactly as training's image folder did."""
    run = load(runs["folder"])
    assert run.data.mode == "RGB" and run.data.fit == "center_crop"
    ds = run.dataset()
    files = [path for path, _ in scan_folder(runs["pictures"]).files["test"]]
    want = eval_labels(run, ds.test_images, ds.test_labels)
    got = cli_labels(capsys, runs["folder"], runs["pictures"] / "test")
    assert [got[str(p)] for p in files] == want
    pixels = np.stack([run.preprocess(p).cpu().numpy()[0] for p in files])
    loader_x = next(iter(run.loader(ds.test_images, ds.test_labels, batch_size=len(files))))[0]
    assert np.array_equal(pixels, loader_x.cpu().numpy())  # what the network sees, exactly
    pytest.importorskip("onnxruntime", reason="the ONNX check needs onnxruntime")
    onnx = pytest.importorskip("onnx", reason="ONNX export needs pip install 'cnnlab[export]'")
    model = tmp_path / "folder.onnx"
    assert main(["export", str(runs["folder"]), "--out", str(model)]) == 0
    capsys.readouterr()
    example = onnx_example()
    onnx_top1 = [top[0][0] for _, top in example.classify(str(model), files)]
    assert onnx_top1 == want
    meta = {p.key: p.value for p in onnx.load(str(model)).metadata_props}
    assert json.loads(meta["cnnlab.classes"]) == list(run.classes)
    assert (meta["cnnlab.mode"], meta["cnnlab.fit"], meta["cnnlab.background"]) == (
        "RGB", "center_crop", "255")  # fmt: skip
    assert json.loads(meta["cnnlab.mean"]) == list(run.data.mean)
    for path in files[:3]:  # the recipe's pixels are cnnlab's, bit for bit
        want_px = run.preprocess(path).cpu().numpy()[0] * np.array(run.data.std).reshape(-1, 1, 1)
        got_px = example.load_pixels(path, meta).astype(np.float64) / 255
        assert np.allclose(got_px - np.array(run.data.mean).reshape(-1, 1, 1), want_px, atol=1e-5)


def test_the_readme_shows_the_onnx_recipe_from_the_example_file():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Use a trained model", 1)[1].split("\n## ", 1)[0]
    block = section.split("```python\n# examples/onnx_predict.py", 1)[1].split("```", 1)[0]
    source = EXAMPLE.read_text(encoding="utf-8")
    excerpt = [line for line in block.splitlines()[1:] if line.strip()]  # after the title
    assert len(excerpt) >= 8
    for line in excerpt:
        assert line in source, f"README line not in {EXAMPLE.name}: {line!r}"


def test_fitted_preprocessing_travels_inside_the_onnx_graph(tmp_path, capsys):
    """A run with ZCA whitening after normalisation: the ONNX recipe still needs only the
    metadata's mean and std, because the whitening is part of the exported graph."""
    pytest.importorskip("onnxruntime", reason="the ONNX check needs onnxruntime")
    onnx = pytest.importorskip("onnx", reason="ONNX export needs pip install 'cnnlab[export]'")
    from cnnlab.config import build_config
    from cnnlab.training.spine import run_training

    params = {"train_size": 256, "test_size": 32, "image_size": 12, "num_classes": 4}
    cfg = build_config({
        "data": {"dataset": "synthetic", "batch_size": 32, "preprocess": ["zca_whitening"],
                 "params": params},
        "model": {"name": "cnn1"}, "train": {"epochs": 1, "progress": False, "precision": "fp32"},
    })  # fmt: skip
    run_training(cfg, tmp_path / "zca", log=lambda m: None)
    run = load(tmp_path / "zca")
    assert len(run.transform) == 1
    paths = []
    for i, img in enumerate(run.dataset().test_images[:, 0].numpy()):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(img).save(paths[-1])
    model = tmp_path / "zca.onnx"
    assert main(["export", str(tmp_path / "zca"), "--out", str(model)]) == 0
    capsys.readouterr()
    meta = {p.key: p.value for p in onnx.load(str(model)).metadata_props}
    assert json.loads(meta["cnnlab.preprocess_in_graph"]) == ["ZCAWhitening"]
    onnx_top1 = [top[0][0] for _, top in onnx_example().classify(str(model), paths)]
    assert onnx_top1 == run.predict(paths).labels
