"""Batched augmentations: contract (shape/dtype/device/determinism) and what each one does."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest
import torch

from cnnlab.data.augment import (
    AUGMENTATIONS,
    FancyPCA,
    build_augmentation,
    chain_transforms,
    hsv_to_rgb,
    parse_pipeline,
    rgb_to_hsv,
    sample_square_boxes,
    validate_augmentation,
)
from cnnlab.data.loader import BatchLoader, Normalizer
from cnnlab.registry import RegistryError

RGB_ONLY = {"color_jitter_hsv", "fancy_pca"}
MEAN, STD = (0.5, 0.4, 0.3), (0.25, 0.2, 0.3)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def batch(b=6, c=3, h=12, w=12, seed=0, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(b, c, h, w, generator=gen(seed)).to(dtype)


def train_images(c=3) -> torch.Tensor:
    return torch.randint(0, 256, (50, c, 8, 8), generator=gen(9), dtype=torch.uint8)


def build(spec, c=3):
    return build_augmentation(
        [spec], mean=MEAN[:c] if c == 3 else (0.5,), std=STD[:c] if c == 3 else (0.25,),
        train_images=train_images(c),
    )  # fmt: skip


def ramp(b, h, w, axis) -> torch.Tensor:
    """Images whose value is the pixel's column (axis=3) or row (axis=2) index."""
    idx = torch.arange(w if axis == 3 else h, dtype=torch.float32)
    shape = (1, 1, 1, w) if axis == 3 else (1, 1, h, 1)
    return idx.view(shape).expand(b, 1, h, w).clone()


# --- the contract, for every registered augmentation -------------------------------------


@pytest.mark.parametrize("name", AUGMENTATIONS.names())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shape_dtype_device_and_determinism(name, dtype):
    aug = build(name)
    x = batch(dtype=dtype)
    out = aug(x, gen(1))
    assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
    assert torch.isfinite(out).all()
    assert torch.equal(out, aug(x, gen(1)))  # same generator seed -> same output
    assert torch.equal(x, batch(dtype=dtype))  # the input is not modified


@pytest.mark.parametrize("name", AUGMENTATIONS.names())
def test_different_seeds_differ_and_p0_is_identity(name):
    x = batch(b=16)
    aug = build(name)  # defaults: flips and erasing with p = 0.5, so the seed matters
    assert not torch.equal(aug(x, gen(1)), aug(x, gen(2)))
    assert torch.equal(build({"name": name, "p": 0.0})(x, gen(1)), x)


@pytest.mark.parametrize("name", sorted(set(AUGMENTATIONS.names()) - RGB_ONLY))
def test_grey_images_work(name):
    x = batch(c=1)
    assert build(name, c=1)(x, gen(0)).shape == x.shape


# --- flips and crops ----------------------------------------------------------------------


def test_flips_flip():
    x = batch()
    assert torch.equal(build({"name": "hflip", "p": 1.0})(x, gen()), torch.flip(x, [3]))
    assert torch.equal(build({"name": "vflip", "p": 1.0})(x, gen()), torch.flip(x, [2]))
    half = build({"name": "hflip", "p": 0.5})(batch(b=200), gen())
    flipped = [torch.equal(o, torch.flip(i, [2])) for o, i in zip(half, batch(b=200), strict=True)]
    assert 60 < sum(flipped) < 140  # about half of them


@pytest.mark.parametrize("mode", ["zeros", "reflect"])
def test_random_crop_is_a_window_of_the_padded_image(mode):
    x, pad = batch(b=10, h=9, w=7), 2
    out = build({"name": "random_crop", "padding": pad, "padding_mode": mode})(x, gen(3))
    padded = torch.nn.functional.pad(
        x, (pad,) * 4, mode="reflect" if mode == "reflect" else "constant"
    )
    offsets = set()
    for i in range(len(x)):
        hits = [(dy, dx) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)
                if torch.equal(out[i], padded[i, :, dy : dy + 9, dx : dx + 7])]  # fmt: skip
        assert len(hits) >= 1, f"sample {i} is no window of its padded image"
        offsets.add(hits[0])
    assert len(offsets) > 1  # the windows move


def test_square_boxes_stay_in_bounds():
    boxes = sample_square_boxes(gen(4), 2000, 20, 30, (0.8, 0.9), torch.zeros(1))
    top, left, side = boxes.unbind(1)
    assert (top >= 0).all() and (left >= 0).all()
    assert (top + side <= 20 + 1e-4).all() and (left + side <= 30 + 1e-4).all()
    assert (side >= 0.8 * 20 - 1e-4).all() and (side <= 0.9 * 20 + 1e-4).all()  # of the side
    assert top.max() > 3.0 and left.max() > 12.0  # positions spread over the free room


def test_square_crop_samples_exactly_its_box():
    # Bilinear interpolation of a linear ramp is exact, so every output pixel must hold the
    # (border-clamped) input coordinate it was sampled from: that pins down the box.
    b, h, w = 8, 10, 16
    x = torch.cat([ramp(b, h, w, 3), ramp(b, h, w, 2)], dim=1)
    out = build({"name": "random_square_crop", "scale": [0.6, 0.9]}, c=1)(x, gen(5))
    top, left, side = sample_square_boxes(gen(5), b, h, w, (0.6, 0.9), x).unbind(1)
    j = torch.arange(w, dtype=torch.float32)
    i = torch.arange(h, dtype=torch.float32)
    want_x = (left[:, None] + (j + 0.5) * side[:, None] / w - 0.5).clamp(0, w - 1)
    want_y = (top[:, None] + (i + 0.5) * side[:, None] / h - 0.5).clamp(0, h - 1)
    torch.testing.assert_close(out[:, 0, 0, :], want_x, atol=1e-4, rtol=0)
    torch.testing.assert_close(out[:, 1, :, 0], want_y, atol=1e-4, rtol=0)


# --- scaling, rotation, translation -------------------------------------------------------


def test_scale_zooms_about_the_centre():
    b, h, w = 3, 8, 8
    x = ramp(b, h, w, 3)
    out = build({"name": "scale", "factors": [2.0]}, c=1)(x, gen())
    j = torch.arange(w, dtype=torch.float32)
    want = (j - (w - 1) / 2) / 2 + (w - 1) / 2  # coordinates pulled towards the centre
    torch.testing.assert_close(out[:, 0, 3, :], want.expand(b, w), atol=1e-5, rtol=0)
    one = build({"name": "scale", "factors": [1.0]})(batch(), gen())
    torch.testing.assert_close(one, batch(), atol=1e-5, rtol=0)


def test_rotation_by_0_is_identity_and_by_90_is_rot90():
    x = batch(h=10, w=10)
    zero = build({"name": "rotate", "angles": [0]})
    torch.testing.assert_close(zero(x, gen()), x, atol=1e-5, rtol=0)
    for angle, k in ((90, 1), (-90, -1), (180, 2)):
        exact = build({"name": "rotate", "angles": [angle], "interpolation": "nearest"})
        assert torch.equal(exact(x, gen()), torch.rot90(x, k, dims=(2, 3)))
        smooth = build({"name": "rotate", "angles": [angle]})
        torch.testing.assert_close(smooth(x, gen()), torch.rot90(x, k, (2, 3)), atol=1e-5, rtol=0)


def test_rotation_keeps_the_centre_and_fills_corners_with_zero():
    x = torch.ones(2, 1, 9, 9)
    out = build({"name": "rotate", "angles": [45]}, c=1)(x, gen())
    assert out[0, 0, 4, 4] == pytest.approx(1.0)
    assert out[0, 0, 0, 0] == 0.0  # outside the rotated square: the mean after normalising


def test_translate_shifts_by_whole_pixels():
    x, m = batch(b=12, h=8, w=8), 2
    aug = build({"name": "translate", "max_pixels": m, "interpolation": "nearest"})
    out = aug(x, gen(6))
    for i in range(len(x)):
        matches = []
        for dy in range(-m, m + 1):
            for dx in range(-m, m + 1):
                want = torch.zeros_like(x[i])
                src = x[i, :, max(0, -dy) : 8 - max(0, dy), max(0, -dx) : 8 - max(0, dx)]
                want[:, max(0, dy) : 8 - max(0, -dy), max(0, dx) : 8 - max(0, -dx)] = src
                matches.append(torch.equal(out[i], want))
        assert sum(matches) == 1


# --- colour ---------------------------------------------------------------------------------


def test_hsv_matches_colorsys_and_round_trips():
    rgb = torch.rand(4, 3, 5, 5, generator=gen(7))
    rgb[0, :, 0, 0] = torch.tensor([0.3, 0.3, 0.3])  # grey: hue and saturation 0
    rgb[0, :, 0, 1] = 0.0  # black
    hsv = rgb_to_hsv(rgb)
    flat_rgb = rgb.permute(0, 2, 3, 1).reshape(-1, 3).double().numpy()
    want = np.array([colorsys.rgb_to_hsv(*px) for px in flat_rgb])
    got = hsv.permute(0, 2, 3, 1).reshape(-1, 3).double().numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
    torch.testing.assert_close(hsv_to_rgb(hsv), rgb, atol=1e-5, rtol=0)


def _pixels(x):
    return x * torch.tensor(STD).view(1, 3, 1, 1) + torch.tensor(MEAN).view(1, 3, 1, 1)


def _normalised(px):
    return (px - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def test_colour_jitter_with_zero_amounts_is_identity_and_brightness_scales():
    x = _normalised(torch.rand(4, 3, 6, 6, generator=gen(8)) * 0.5)
    still = build({"name": "color_jitter_rgb", "brightness": 0, "contrast": 0, "saturation": 0})
    torch.testing.assert_close(still(x, gen()), x, atol=1e-5, rtol=1e-5)
    still = build({"name": "color_jitter_hsv", "hue": 0, "saturation": 0, "value": 0})
    torch.testing.assert_close(still(x, gen()), x, atol=1e-5, rtol=1e-5)
    bright = build({"name": "color_jitter_rgb", "brightness": 0.5, "contrast": 0, "saturation": 0})
    ratio = _pixels(bright(x, gen(2))) / _pixels(x)  # pixels <= 0.5, factor <= 1.5: no clamp
    per_image = ratio.flatten(1)
    torch.testing.assert_close(per_image, per_image[:, :1].expand_as(per_image), atol=1e-4, rtol=0)
    assert per_image[:, 0].std() > 0.01


def test_hsv_value_jitter_keeps_hue():
    x = _normalised(torch.rand(4, 3, 6, 6, generator=gen(8)) * 0.6 + 0.2)
    aug = build({"name": "color_jitter_hsv", "hue": 0, "saturation": 0, "value": 0.2})
    before, after = rgb_to_hsv(_pixels(x)), rgb_to_hsv(_pixels(aug(x, gen(3))).clamp(0, 1))
    torch.testing.assert_close(after[:, 0], before[:, 0], atol=1e-4, rtol=0)


def test_fancy_pca_fit_matches_numpy():
    imgs = train_images()
    pca = FancyPCA.fit(imgs, chunk=7)
    px = imgs.permute(1, 0, 2, 3).reshape(3, -1).double().numpy() / 255
    vals, vecs = np.linalg.eigh(np.cov(px, bias=True))
    np.testing.assert_allclose(pca.eigvals.numpy(), vals[::-1], rtol=1e-4)
    np.testing.assert_allclose(np.abs(pca.eigvecs.numpy()), np.abs(vecs[:, ::-1]), atol=1e-4)


def test_fancy_pca_noise_lies_on_the_eigenvectors_with_the_right_scale():
    # Grey training images copied into R, G and B: the colour covariance has rank 1, so every
    # offset must lie along p1 = (1, 1, 1)/sqrt(3), with alpha ~ N(0, 0.1) times lambda_1.
    grey = torch.randint(0, 256, (40, 1, 6, 6), generator=gen(1), dtype=torch.uint8)
    aug = build_augmentation(
        [{"name": "fancy_pca"}], mean=MEAN, std=STD, train_images=grey.expand(-1, 3, -1, -1)
    )
    pca = aug.ops[0].pca
    x = torch.zeros(4000, 3, 2, 2)
    delta = (aug(x, gen(2)) - x) * torch.tensor(STD).view(1, 3, 1, 1)  # back to pixel units
    assert torch.allclose(delta, delta[:, :, :1, :1].expand_as(delta), atol=1e-6)  # per image
    d = delta[:, :, 0, 0].double()  # (B, 3)
    p1 = torch.full((3,), 3**-0.5, dtype=torch.float64)
    along = d @ p1
    torch.testing.assert_close(d, along[:, None] * p1, atol=1e-6, rtol=0)
    alpha = along / pca.eigvals[0].double() * torch.sign(pca.eigvecs[:, 0].sum()).double()
    assert abs(float(alpha.std()) - 0.1) < 0.005 and abs(float(alpha.mean())) < 0.005


# --- erasing ----------------------------------------------------------------------------------


def test_random_erasing_erases_one_rectangle_of_the_stated_area():
    h = w = 64
    x = torch.ones(300, 1, h, w)
    lo, hi = 0.05, 0.2
    out = build({"name": "random_erasing", "p": 1.0, "area": [lo, hi]}, c=1)(x, gen(3))
    erased = out[:, 0] == 0
    count = erased.flatten(1).sum(1).float()
    rows, cols = erased.any(2).sum(1), erased.any(1).sum(1)
    assert torch.equal(rows * cols, count.long())  # a filled rectangle
    tol = (rows + cols + 1) / (h * w)  # rounding the sides to whole pixels
    frac = count / (h * w)
    assert (frac >= lo - tol).all() and (frac <= hi + tol).all()
    assert frac.min() < lo + 0.03 and frac.max() > hi - 0.03  # the range is used


def test_random_erasing_random_fill_and_cutout_size():
    x = torch.ones(50, 1, 16, 16)
    noisy = build({"name": "random_erasing", "p": 1.0, "value": "random"}, c=1)(x, gen())
    assert ((noisy != 1).flatten(1).sum(1) > 0).all()
    out = build({"name": "cutout", "size": 6}, c=1)(x, gen(4))
    n = (out == 0).flatten(1).sum(1)
    assert (n >= 3 * 3).all() and (n <= 6 * 6).all() and (n == 36).any()


# --- building pipelines ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        (["hflp"], "Did you mean 'hflip'"),
        ([{"name": "hflip", "prob": 0.5}], "has no option 'prob'"),
        ([{"name": "hflip", "p": 2}], "p must be in [0, 1]"),
        ([{"name": "rotate", "angles": []}], "angles must be a non-empty list"),
        ([{"name": "random_square_crop", "scale": [0.9, 0.8]}], "scale must be"),
        ([{"name": "fancy_pca", "train_images": None}], "cannot be set in a config"),
        ([{"p": 0.5}], "expected a name or a mapping"),
        ("hflip", "expected a list"),
    ],
)
def test_bad_specs_fail_clearly(specs, message):
    with pytest.raises(RegistryError, match=message.replace("[", r"\[").replace("]", r"\]")):
        build_augmentation(specs, mean=MEAN, std=STD)


def test_validate_without_data():
    validate_augmentation([{"name": "fancy_pca"}, "color_jitter_hsv", {"name": "rotate"}])
    validate_augmentation(None)
    with pytest.raises(RegistryError, match="has no option 'angle'"):
        validate_augmentation([{"name": "rotate", "angle": 3}])
    with pytest.raises(RegistryError, match="needs RGB images"):
        validate_augmentation(["color_jitter_hsv"], channels=1)


def test_context_requirements():
    with pytest.raises(RegistryError, match="needs the training images"):
        build_augmentation(["fancy_pca"], mean=MEAN, std=STD)
    with pytest.raises(RegistryError, match="needs RGB images"):
        build_augmentation(["color_jitter_hsv"], mean=(0.5,), std=(0.2,))


def test_parse_pipeline_forms(tmp_path):
    assert parse_pipeline("random_crop, hflip") == ["random_crop", "hflip"]
    assert parse_pipeline("[{name: rotate, angles: [-15, 15]}, hflip]") == [
        {"name": "rotate", "angles": [-15, 15]}, "hflip"]  # fmt: skip
    f = tmp_path / "aug.yaml"
    f.write_text("augment:\n  - {name: random_crop, padding: 2}\n  - hflip\n")
    assert parse_pipeline(str(f)) == [{"name": "random_crop", "padding": 2}, "hflip"]
    with pytest.raises(RegistryError, match="does not exist"):
        parse_pipeline(str(tmp_path / "missing.yaml"))


def test_pipeline_in_the_loader_is_deterministic_per_epoch():
    images = torch.randint(0, 256, (40, 3, 8, 8), generator=gen(2), dtype=torch.uint8)
    labels = torch.arange(40) % 4
    norm = Normalizer.fit(images)
    specs = [{"name": "random_crop", "padding": 2}, "hflip", {"name": "random_erasing", "p": 1}]
    aug = build_augmentation(specs, mean=norm.mean, std=norm.std)
    assert len(aug) == 3 and "random_crop(padding=2" in repr(aug)

    def epoch(e):
        loader = BatchLoader(images, labels, batch_size=16, normalizer=norm, shuffle=True,
                             seed=1, transform=chain_transforms(aug, None))  # fmt: skip
        loader.set_epoch(e)
        return torch.cat([x for x, _ in loader])

    assert torch.equal(epoch(0), epoch(0))
    assert not torch.equal(epoch(0), epoch(1))
    assert chain_transforms(None, build_augmentation([])) is None
