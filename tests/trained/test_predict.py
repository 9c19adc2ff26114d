"""``run.predict`` / ``run.preprocess``: every input kind, the result type, TTA, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from cnnlab.data.images import ImageInputError
from cnnlab.evaluation.tta import TTA
from cnnlab.trained.predict import Prediction
from cnnlab.trained.run import load


@pytest.fixture(scope="module")
def grey(runs):
    return load(runs["grey"])


@pytest.fixture(scope="module")
def rgb(runs):
    return load(runs["rgb"])


def test_prediction_type_matches_softmax_and_topk_by_hand():
    probs = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]])
    pred = Prediction(probs, ("cat", "dog", "owl"), ["a.png", "b.png"], top_k=2)
    assert pred.labels == ["dog", "cat"] and pred.indices.tolist() == [1, 0]
    assert pred.top_labels == [["dog", "owl"], ["cat", "owl"]]
    assert torch.equal(pred.top_probs, torch.tensor([[0.7, 0.2], [0.5, 0.3]]))
    first = pred[0]
    assert (first.input, first.label, first.prob) == ("a.png", "dog", pytest.approx(0.7))
    assert pred.to_rows()[1]["top_k"] == [
        {"label": "cat", "prob": pytest.approx(0.5)},
        {"label": "owl", "prob": pytest.approx(0.3)},
    ]
    assert "b.png: cat (50.0%)" in repr(pred) and len(pred) == 2
    assert Prediction(probs, ("cat", "dog", "owl"), ["a", "b"], top_k=9).top_k == 3
    with pytest.raises(ValueError, match=r"probs \(2, 3\) must be \(N=1, C=3\)"):
        Prediction(probs, ("cat", "dog", "owl"), ["a"])


def test_preprocess_is_what_the_evaluation_loader_feeds_the_network(grey):
    ds = grey.dataset()
    x, _ = next(iter(grey.loader(ds.test_images[:10], ds.test_labels[:10], batch_size=10)))
    assert torch.equal(grey.preprocess(ds.test_images[:10]), x)
    assert grey.preprocess(ds.test_images[:10]).is_contiguous(memory_format=torch.channels_last)
    # The normalisation by hand: (x / 255 - mean) / std.
    mean, std = grey.data.mean[0], grey.data.std[0]
    by_hand = (ds.test_images[:10].float() / 255 - mean) / std
    assert torch.allclose(x, by_hand, atol=1e-5)


def test_every_input_kind_gives_the_same_answer(grey, tmp_path):
    ds = grey.dataset()
    images = ds.test_images[:6]  # uint8 (6, 1, 12, 12)
    with torch.inference_mode():
        want = F.softmax(grey.model(grey.preprocess(images)).float(), dim=1)
    base = grey.predict(images, top_k=4)
    assert torch.allclose(base.probs, want, atol=1e-6)
    assert base.inputs == tuple(f"#{i}" for i in range(6))
    arrays = images[:, 0].numpy()  # (N, H, W), as IDX files hold them
    paths = []
    for i, a in enumerate(arrays):
        Image.fromarray(a).save(tmp_path / f"{i}.png")
        paths.append(tmp_path / f"{i}.png")
    variants = {
        "tensor NCHW": grey.predict(images),
        "numpy NHW": grey.predict(arrays),
        "numpy NCHW": grey.predict(images.numpy()),
        "floats in [0, 1]": grey.predict(images.float() / 255),
        "list of HxW arrays": grey.predict(list(arrays)),
        "list of paths": grey.predict(paths),
        "folder": grey.predict(str(tmp_path)),
        "glob": grey.predict(str(tmp_path / "*.png")),
        "PIL images": grey.predict([Image.fromarray(a) for a in arrays]),
        "RGB arrays, luma": grey.predict([np.stack([a] * 3, -1) for a in arrays]),
    }
    for name, pred in variants.items():
        assert torch.allclose(pred.probs, base.probs, atol=1e-5), name
    assert variants["list of paths"].inputs == tuple(str(p) for p in paths)


def test_tta_averages_the_softmax_of_the_views(rgb):
    images = rgb.dataset().test_images[:8]
    x = rgb.preprocess(images)
    with torch.inference_mode():
        plain = F.softmax(rgb.model(x).float(), dim=1)
        flipped = F.softmax(rgb.model(x.flip(3)).float(), dim=1)
        tta = TTA(rgb.model, "flip")(x).exp()
    for views in ("flip", "identity,hflip", ["identity", "hflip"]):
        got = rgb.predict(images, tta=views).probs
        assert torch.allclose(got, (plain + flipped) / 2, atol=1e-5), views
        assert torch.allclose(got, tta, atol=1e-6)


def test_inputs_that_cannot_match_say_what_the_model_expects(grey, rgb, tmp_path):
    with pytest.raises(ImageInputError, match=r"expects grey 1x12x12 images; got shape \(8, 8\)"):
        grey.predict(np.zeros((8, 8), np.uint8))
    with pytest.raises(ImageInputError, match="colour 3x12x12"):
        rgb.predict(np.zeros((2, 3, 5, 5), np.uint8))
    (tmp_path / "junk.png").write_text("not an image")
    with pytest.raises(ImageInputError, match=r"junk\.png: UnidentifiedImageError"):
        grey.predict(tmp_path / "junk.png")
    with pytest.raises(ImageInputError, match="nope.png: no such file"):
        grey.predict(str(tmp_path / "nope.png"))
    with pytest.raises(ImageInputError, match="cannot predict a dict"):
        grey.predict({"image": 1})
    with pytest.raises(ImageInputError, match="already normalised"):
        grey.predict(grey.preprocess(np.zeros((12, 12), np.uint8)))
