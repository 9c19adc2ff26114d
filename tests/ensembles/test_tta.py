"""Test-time augmentation (handbook §13.1.1): views, averaging, identity, ensembles."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cnnlab.ensembles import TTA, Ensemble, EnsembleError, preset_views
from cnnlab.evaluation.evaluate import evaluate
from cnnlab.evaluation.tta import make_view, shift
from cnnlab.models.spec import build_model

SPEC = {"name": "cnn1", "params": {}, "num_classes": 4, "in_chans": 1, "input_size": 12}


def model(seed: int = 0):
    torch.manual_seed(seed)
    return build_model(SPEC).eval()


def data(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, 1, 12, 12, generator=gen), torch.randint(0, 4, (8,), generator=gen))]


def test_identity_view_equals_the_model():
    m = model()
    tta = TTA(m, ["identity"])
    x, _ = data()[0]
    with torch.no_grad():
        assert torch.allclose(tta(x), F.log_softmax(m(x), 1), atol=1e-6)
    a, b = evaluate(m, data(), num_classes=4), evaluate(tta, data(), num_classes=4)
    assert b.loss == pytest.approx(a.loss, abs=1e-6) and b.accuracy == a.accuracy


def test_views_are_averaged_in_probability():
    m = model()
    x, _ = data()[0]
    with torch.no_grad():
        want = (F.softmax(m(x), 1) + F.softmax(m(x.flip(3)), 1)) / 2
        assert torch.allclose(TTA(m, ["identity", "hflip"])(x).exp(), want, atol=1e-6)
        want = (F.softmax(m(x), 1) + F.softmax(m(shift(x, 1, -2)), 1)) / 2
        got = TTA(m, ["identity", {"name": "shift", "dy": 1, "dx": -2}])(x).exp()
        assert torch.allclose(got, want, atol=1e-6)


def test_shift_moves_the_content_and_fills_with_zero():
    x = torch.arange(1, 26, dtype=torch.float32).view(1, 1, 5, 5)
    down = shift(x, 1, 0)
    assert torch.equal(down[..., 1:, :], x[..., :-1, :]) and (down[..., 0, :] == 0).all()
    left = shift(x, 0, -2)
    assert torch.equal(left[..., :, :-2], x[..., :, 2:]) and (left[..., :, -2:] == 0).all()
    assert torch.equal(shift(x, 0, 0), x)


def test_tta_wraps_an_ensemble():
    ens = Ensemble([model(1), model(2)]).eval()
    x, _ = data()[0]
    with torch.no_grad():
        assert torch.allclose(TTA(ens, ["identity"])(x), ens(x), atol=1e-6)
        want = (ens(x).exp() + ens(x.flip(3)).exp()) / 2
        assert torch.allclose(TTA(ens, "flip")(x).exp(), want, atol=1e-6)


def test_presets_and_bad_views():
    assert len(preset_views("flip")) == 2
    assert len(preset_views("shift")) == 5
    assert len(preset_views("flip_shift")) == 10
    with pytest.raises(EnsembleError, match="unknown TTA preset"):
        preset_views("crops")
    with pytest.raises(EnsembleError, match="unknown TTA view"):
        make_view("rotate")
    with pytest.raises(EnsembleError, match="unknown option"):
        make_view({"name": "shift", "dz": 1})
    with pytest.raises(EnsembleError, match="at least one view"):
        TTA(model(), [])


def test_augment_view_is_a_fixed_random_view():
    view = make_view({"name": "augment", "pipeline": [{"name": "random_crop", "padding": 2}],
                      "seed": 3})  # fmt: skip
    x, _ = data()[0]
    assert torch.equal(view(x), view(x)) and not torch.equal(view(x), x)


def test_untaught_views_names_the_transformations_training_never_showed():
    from cnnlab.evaluation.tta import untaught_views

    flip_shift = preset_views("flip_shift")
    assert untaught_views(flip_shift, []) == ["hflip", "shift"]
    assert untaught_views(flip_shift, ["hflip"]) == ["shift"]
    crop_flip = [{"name": "random_crop", "padding": 2}, {"name": "hflip", "p": 0.5}]
    assert untaught_views(flip_shift, crop_flip) == []
    assert untaught_views(preset_views("shift"), [{"name": "translate", "max_pixels": 2}]) == []
    assert untaught_views(["identity", "vflip"], ["hflip"]) == ["vflip"]
    # views whose transformation is not known are not judged
    assert untaught_views([lambda x: x, {"name": "augment", "pipeline": ["rotate"]}], []) == []


def test_built_views_carry_their_transformations():
    """TTA's own view objects (as an ensemble holds them) are judged like their specs."""
    from cnnlab.evaluation.tta import make_view, untaught_views

    built = [v if callable(v) else make_view(v) for v in preset_views("flip_shift")]
    assert untaught_views(built, []) == ["hflip", "shift"]
    assert untaught_views(built, ["hflip", "translate"]) == []
    assert untaught_views([make_view({"name": "augment", "pipeline": ["hflip"]})], []) == []
