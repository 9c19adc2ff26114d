"""Decoding any picture the way training saw it: formats, modes, EXIF, alpha, arrays."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.data.images import (
    ImageInputError,
    array_to_batch,
    background_level,
    decode_errors,
    decode_file,
    is_grey_file,
    luma,
    resolve_mode,
    to_pixels,
)


def gradient(h: int = 32, w: int = 32) -> np.ndarray:
    """A smooth, asymmetric RGB picture (JPEG keeps it within a few levels)."""
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([8 * yy, 8 * xx, 255 - 4 * (yy + xx)], axis=-1).clip(0, 255).astype(np.uint8)


def test_composite_and_luma_match_hand_worked_values():
    # (c * a + bg * (255 - a)) / 255: 200 at alpha 51 (0.2) on white = 40 + 204 = 244.
    rgba = np.array([[[200, 100, 0, 51], [10, 20, 30, 255], [99, 99, 99, 0]]], np.uint8)
    im = Image.fromarray(rgba, "RGBA")
    on_white = to_pixels(im, 3, "RGB", "stretch", "white")[:, 0]
    assert on_white.T.tolist() == [[244, 224, 204], [10, 20, 30], [255, 255, 255]]
    on_black = to_pixels(im, 3, "RGB", "stretch", "black")[:, 0]
    assert on_black.T.tolist() == [[40, 20, 0], [10, 20, 30], [0, 0, 0]]
    # luma is Pillow's own RGB -> L, bit for bit, on random pixels.
    rgb = np.random.default_rng(0).integers(0, 256, (17, 13, 3), dtype=np.uint8)
    assert np.array_equal(luma(rgb), np.asarray(Image.fromarray(rgb).convert("L")))
    assert [background_level(b) for b in ("black", "white", 7)] == [0, 255, 7]
    for bad in ("grey", -1, 256, 1.5, True):
        with pytest.raises(ValueError, match="background must be"):
            background_level(bad)


def test_exif_rotated_jpeg_decodes_like_its_upright_copy(tmp_path):
    upright = Image.fromarray(gradient(32, 48))
    upright.save(tmp_path / "upright.jpg", quality=95)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation 6: the viewer turns the stored picture 90 degrees clockwise
    upright.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "phone.jpg", quality=95, exif=exif)
    want = decode_file(tmp_path / "upright.jpg", 16, "RGB", "stretch").astype(int)
    got = decode_file(tmp_path / "phone.jpg", 16, "RGB", "stretch").astype(int)
    assert np.abs(got - want).max() <= 6
    with Image.open(tmp_path / "phone.jpg") as raw:  # without the tag it would be sideways
        sideways = np.asarray(raw.convert("RGB").resize((16, 16), Image.Resampling.BILINEAR))
    assert np.abs(sideways.transpose(2, 0, 1).astype(int) - want).max() > 60


def test_formats_and_modes(tmp_path):
    rgb = gradient(16, 16)
    grey = luma(rgb)
    for suffix in (".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"):
        opts = {"lossless": True} if suffix == ".webp" else {}
        Image.fromarray(grey).save(tmp_path / f"g{suffix}", **opts)
        assert np.array_equal(decode_file(tmp_path / f"g{suffix}", 16, "L", "stretch")[0], grey)
    # 16-bit grey PNG: scaled by 1/257, not clipped at 255.
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "deep.png")
    assert np.array_equal(decode_file(tmp_path / "deep.png", 16, "L", "stretch")[0], grey)
    # A palette image decodes to its colours; a grey model sees their luma.
    Image.fromarray(rgb).quantize(64).save(tmp_path / "pal.png")
    with Image.open(tmp_path / "pal.png") as im:
        colours = np.asarray(im.convert("RGB"))
    assert np.array_equal(decode_file(tmp_path / "pal.png", 16, "RGB", "stretch"),
                          colours.transpose(2, 0, 1))  # fmt: skip
    assert np.array_equal(decode_file(tmp_path / "pal.png", 16, "L", "stretch")[0], luma(colours))
    # CMYK JPEG: Pillow's conversion back to RGB, within JPEG's loss.
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "print.jpg", quality=100)
    back = decode_file(tmp_path / "print.jpg", 16, "RGB", "stretch").astype(int)
    assert np.abs(back - rgb.transpose(2, 0, 1)).max() <= 12
    # Grey + alpha and a palette with a transparent index, on the default black background.
    la = np.stack([grey, np.full_like(grey, 51)], axis=-1)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    want = ((grey.astype(int) * 51 + 127) // 255).astype(np.uint8)
    assert np.array_equal(decode_file(tmp_path / "la.png", 16, "L", "stretch")[0], want)
    pal = Image.new("P", (4, 4), 1)
    pal.putpalette([0, 0, 0, 250, 250, 250] + [0] * 762)
    pal.info["transparency"] = 1
    pal.save(tmp_path / "clear.png", transparency=1)
    assert (decode_file(tmp_path / "clear.png", 4, "RGB", "stretch", "white") == 255).all()


def test_resize_rules_and_images_already_at_size(tmp_path):
    arr = gradient(20, 20)
    im = Image.fromarray(arr)
    assert np.array_equal(to_pixels(im, 20, "RGB", "center_crop"), arr.transpose(2, 0, 1))
    assert np.array_equal(to_pixels(im, 20, "RGB", "stretch"), arr.transpose(2, 0, 1))
    wide = Image.fromarray(gradient(20, 40))
    crop = to_pixels(wide, 20, "RGB", "center_crop")
    assert np.array_equal(crop, gradient(20, 40)[:, 10:30].transpose(2, 0, 1))
    want = np.asarray(wide.resize((20, 20), Image.Resampling.BILINEAR)).transpose(2, 0, 1)
    assert np.array_equal(to_pixels(wide, 20, "RGB", "stretch"), want)


def test_bad_files_raise_decode_errors(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("not an image")
    noise = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "good.png")
    good = (tmp_path / "good.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(good[: len(good) // 2])  # truncated
    for name, fragment in (("empty", "empty file"), ("text", "cannot identify"), ("cut", None)):
        with pytest.raises(decode_errors(), match=fragment):
            decode_file(tmp_path / f"{name}.png", 8, "RGB", "stretch")
    assert is_grey_file(tmp_path / "text.png") is None
    assert is_grey_file(tmp_path / "good.png") is False
    Image.fromarray(luma(gradient())).save(tmp_path / "grey.png")
    assert resolve_mode("auto", [tmp_path / "grey.png", tmp_path / "text.png"]) == "L"
    assert resolve_mode("auto", [tmp_path / "grey.png", tmp_path / "good.png"]) == "RGB"


def test_arrays_in_every_layout_give_the_same_batch():
    rgb = gradient(8, 8)  # (H, W, 3)
    want = rgb.transpose(2, 0, 1)[None]
    assert np.array_equal(array_to_batch(rgb, chans=3, size=8), want)
    assert np.array_equal(array_to_batch(want, chans=3, size=8), want)
    assert np.array_equal(array_to_batch(torch.from_numpy(want[0]), chans=3, size=8), want)
    assert np.array_equal(array_to_batch(rgb / 255.0, chans=3, size=8), want)
    grey = luma(rgb)
    assert np.array_equal(array_to_batch(rgb, chans=1, size=8)[0, 0], grey)  # Pillow's luma
    assert np.array_equal(array_to_batch(grey, chans=3, size=8)[0], np.stack([grey] * 3))
    stack = np.stack([grey, grey[::-1]])  # (N, H, W): a batch of grey images, as in IDX files
    assert array_to_batch(stack, chans=1, size=8).shape == (2, 1, 8, 8)
    rgba = np.concatenate([rgb, np.zeros((8, 8, 1), np.uint8)], axis=-1)  # fully transparent
    assert (array_to_batch(rgba, chans=3, size=8, background="white") == 255).all()
    deep = grey.astype(np.uint16) * 257
    assert np.array_equal(array_to_batch(deep, chans=1, size=8)[0, 0], grey)


@pytest.mark.parametrize(
    ("x", "fragment"),
    [
        (np.zeros((20, 20), np.uint8), r"expects grey 1x28x28 images; got shape \(20, 20\)"),
        (np.zeros((2, 28, 28, 3), np.uint8), r"transpose\(0, 3, 1, 2\)"),
        (np.zeros((2, 7, 28, 28), np.uint8), "C = 1 .grey."),
        (torch.zeros(5, 28, 28, dtype=torch.uint8), r"unsqueeze\(1\)"),
        (np.full((28, 28), 2.0, np.float32), r"float pixels must lie in \[0, 1\]"),
        (np.full((28, 28), -3, np.int64), r"got int64 with values in \[-3, -3\]"),
    ],
)
def test_arrays_that_cannot_match_say_what_the_model_expects(x, fragment):
    with pytest.raises(ImageInputError, match=fragment):
        array_to_batch(x, chans=1, size=28, what="input")
