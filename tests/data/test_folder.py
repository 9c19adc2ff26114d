"""Image folders: layouts, decoding, the tensor cache and its invalidation, bad files by path."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.data import folder as folder_mod
from cnnlab.data import images as images_mod
from cnnlab.data.cifar import DataFileError
from cnnlab.data.datasets import DatasetNotFoundError, load_dataset
from cnnlab.registry import RegistryError

COLOURS = {"cat": (200, 30, 10), "dog": (10, 180, 40), "owl": (20, 40, 220)}


def solid(path: Path, colour, size=(12, 9), fmt=None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, format=fmt)


def make_tree(root: Path, per_class: int = 4) -> Path:
    """root/<class>/ with solid-colour images of mixed sizes and formats."""
    for name, colour in COLOURS.items():
        for i in range(per_class):
            suffix = ".jpg" if i == 0 else ".png"
            solid(root / name / f"img{i}{suffix}", colour, size=(12 + i, 9))
    return root


def load(root: Path, tmp_path: Path, **opts):
    opts.setdefault("image_size", 8)
    return load_dataset("image_folder", root, cache_dir=tmp_path / "cache", **opts)


def test_one_level_layout_with_stratified_test_split(tmp_path):
    ds = load(make_tree(tmp_path / "pics"), tmp_path, test_fraction=0.25)
    assert ds.classes == ("cat", "dog", "owl")
    assert ds.train_images.shape == (9, 3, 8, 8) and ds.test_images.shape == (3, 3, 8, 8)
    assert ds.class_counts.tolist() == [3, 3, 3] and ds.test_labels.sort().values.tolist() == [
        0,
        1,
        2,
    ]
    for images, labels in ((ds.train_images, ds.train_labels), (ds.test_images, ds.test_labels)):
        for img, label in zip(images, labels, strict=True):
            want = torch.tensor(COLOURS[ds.classes[label]], dtype=torch.float32).view(3, 1, 1)
            assert (img.float() - want).abs().max() <= 4  # JPEG is lossy by a few levels
    assert ds.notice is None


def test_split_layout_grey_mode_and_centre_crop(tmp_path):
    root = tmp_path / "split"
    for split, n in (("train", 3), ("test", 1)):
        for name, colour in COLOURS.items():
            for i in range(n):
                solid(root / split / name / f"{i}.png", colour)
    ds = load(root, tmp_path, mode="L", image_size=5)
    assert ds.train_images.shape == (9, 1, 5, 5) and ds.test_images.shape == (3, 1, 5, 5)
    grey = round(0.299 * 200 + 0.587 * 30 + 0.114 * 10)
    assert abs(int(ds.train_images[ds.train_labels == 0][0, 0, 2, 2]) - grey) <= 1
    # A wide image: red centre square, blue side bands. Centre-crop keeps only red.
    wide = np.zeros((10, 20, 3), np.uint8)
    wide[:, :, 2] = 255
    wide[:, 5:15] = (255, 0, 0)
    path = tmp_path / "wide.png"
    Image.fromarray(wide).save(path)
    crop = folder_mod.decode_image(path, 6, "RGB", "center_crop")
    assert (crop[0] == 255).all() and (crop[2] == 0).all()
    stretched = folder_mod.decode_image(path, 6, "RGB", "stretch")
    assert stretched[2, :, 0].min() > 200  # the blue band survives a stretch


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path):
    path = tmp_path / "deep.png"
    Image.fromarray(np.full((4, 4), 257 * 100, np.uint16)).save(path)
    assert (folder_mod.decode_image(path, 4, "L", "stretch") == 100).all()


def test_cache_is_used_and_invalidated_by_changes(tmp_path, monkeypatch):
    root = make_tree(tmp_path / "pics")
    first = load(root, tmp_path)
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 1
    real = folder_mod.decode_image
    calls = []

    def counting(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(folder_mod, "decode_image", counting)
    second = load(root, tmp_path)
    assert calls == []  # every tensor came from the cache
    assert torch.equal(first.train_images, second.train_images)
    assert torch.equal(first.test_labels, second.test_labels)
    # Changing one file (new content, size and mtime) invalidates the cache.
    solid(root / "dog" / "img2.png", (0, 0, 0), size=(30, 30))
    os.utime(root / "dog" / "img2.png", ns=(1, 1))
    third = load(root, tmp_path)
    assert len(calls) == 12
    assert not torch.equal(third.train_images, first.train_images) or not torch.equal(
        third.test_images, first.test_images
    )
    solid(root / "owl" / "new.png", COLOURS["owl"])  # an added file too
    calls.clear()
    assert len(load(root, tmp_path).train_labels) + len(load(root, tmp_path).test_labels) == 13
    assert len(calls) == 13  # decoded once, then cached
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 1  # overwritten in place


def broken_tree(tmp_path: Path) -> tuple[Path, Path, Path]:
    root = make_tree(tmp_path / "pics")
    garbage = root / "cat" / "garbage.png"
    garbage.write_bytes(b"this is not an image at all")
    good = (root / "dog" / "img1.png").read_bytes()
    truncated = root / "dog" / "cut.png"
    truncated.write_bytes(good[: len(good) // 2])
    (root / "owl" / "README.txt").write_text("notes")
    return root, garbage, truncated


def test_bad_files_stop_with_their_paths(tmp_path):
    root, garbage, truncated = broken_tree(tmp_path)
    with pytest.raises(DataFileError) as err:
        load(root, tmp_path)
    text = str(err.value)
    assert str(garbage) in text and str(truncated) in text
    assert "--set data.params.on_error=skip" in text  # the CLI form of the option
    assert "unreadable image file(s) (2)" in text


def test_skip_lists_every_skipped_and_ignored_file(tmp_path):
    root, garbage, truncated = broken_tree(tmp_path)
    ds = load(root, tmp_path, on_error="skip")
    assert len(ds.train_labels) + len(ds.test_labels) == 12
    assert str(garbage) in ds.notice and str(truncated) in ds.notice
    assert str(root / "owl" / "README.txt") in ds.notice
    assert "ignored (not an image file)" in ds.notice
    again = load(root, tmp_path, on_error="skip")  # from the cache: the notice is kept
    assert again.notice == ds.notice


def test_impossible_mode_conversion_is_reported(tmp_path, monkeypatch):
    root = make_tree(tmp_path / "pics")
    real = images_mod._to_8bit

    def picky(im):
        if im.size == (13, 9):  # the img1 files
            raise ValueError("conversion from LAB to RGB not supported")
        return real(im)

    monkeypatch.setattr(images_mod, "_to_8bit", picky)
    with pytest.raises(DataFileError, match=r"img1\.png: ValueError: conversion from LAB"):
        load(root, tmp_path)


def test_empty_class_folders_are_named(tmp_path):
    root = make_tree(tmp_path / "pics")
    (root / "emu").mkdir()
    (root / "yak").mkdir()
    (root / "yak" / "notes.txt").write_text("no pictures")
    for on_error in ("stop", "skip"):
        with pytest.raises(
            DataFileError, match=rf"empty class folder.*{root / 'emu'}.*{root / 'yak'}"
        ):
            load(root, tmp_path, on_error=on_error)


def test_a_class_with_only_bad_files_is_refused_even_with_skip(tmp_path):
    root = make_tree(tmp_path / "pics", per_class=2)
    for path in (root / "owl").iterdir():
        path.write_bytes(b"junk")
    with pytest.raises(DataFileError, match="no training images for class\\(es\\) owl"):
        load(root, tmp_path, on_error="skip")


@pytest.mark.parametrize(
    ("opts", "error", "message"),
    [
        ({"image_size": 0}, RegistryError, "image_size must be an int >= 1"),
        ({"mode": "CMYK"}, RegistryError, "mode must be one of auto, RGB, L"),
        ({"background": "pink"}, RegistryError, "background must be 'black', 'white' or a grey"),
        ({"background": 256}, RegistryError, "background must be 'black', 'white' or a grey"),
        ({"on_error": "ignore"}, RegistryError, "on_error must be 'stop' or 'skip'"),
        ({"test_fraction": 1.0}, RegistryError, "test_fraction must be in"),
        ({"fit": "squash"}, RegistryError, "fit must be one of"),
        ({"colour": 1}, RegistryError, "has no option 'colour'"),
    ],
)
def test_bad_options(tmp_path, opts, error, message):
    with pytest.raises(error, match=message):
        load(make_tree(tmp_path / "pics", per_class=1), tmp_path, **opts)


def test_missing_folders(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="image_folder needs data_dir"):
        load_dataset("image_folder")
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        load(tmp_path / "nope", tmp_path)
    (tmp_path / "flat").mkdir()
    solid(tmp_path / "flat" / "a.png", (1, 2, 3))
    with pytest.raises(DatasetNotFoundError, match="holds no class sub-folders"):
        load(tmp_path / "flat", tmp_path)
    root = tmp_path / "split"
    solid(root / "train" / "cat" / "0.png", (1, 2, 3))
    solid(root / "test" / "cow" / "0.png", (1, 2, 3))
    with pytest.raises(DataFileError, match="class folder\\(s\\) cow have no training folder"):
        load(root, tmp_path)


def test_an_unwritable_cache_is_reported_not_fatal(tmp_path):
    root = make_tree(tmp_path / "pics", per_class=2)
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    ds = load_dataset("image_folder", root, image_size=4, cache_dir=blocker / "cache")
    assert len(ds.train_labels) + len(ds.test_labels) == 6
    assert "could not write the cache" in ds.notice
    plain = load_dataset("image_folder", root, image_size=4, cache=False)
    assert torch.equal(plain.train_images, ds.train_images) and plain.notice is None


def grey_tree(root: Path, mode: str = "L") -> Path:
    for k, name in enumerate(("dark", "light")):
        for i in range(3):
            path = root / name / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new(mode, (10, 10), 40 + 150 * k + i).save(path)
    return root


def test_auto_mode_loads_a_grey_folder_as_one_channel(tmp_path):
    ds = load(grey_tree(tmp_path / "grey"), tmp_path, test_fraction=1 / 3)
    assert ds.in_chans == 1  # every file is stored grey (L)
    assert sorted(ds.train_images[:, 0, 0, 0].tolist()) == [40, 41, 190, 191]
    palette = grey_tree(tmp_path / "palette", mode="L")
    Image.new("L", (10, 10), 7).convert("P").save(palette / "dark" / "3.png")  # grey palette
    assert load(palette, tmp_path).in_chans == 1
    # One colour file makes the whole folder RGB; an explicit mode always wins.
    mixed = grey_tree(tmp_path / "mixed")
    solid(mixed / "light" / "colour.png", (200, 30, 10))
    assert load(mixed, tmp_path).in_chans == 3
    assert load(grey_tree(tmp_path / "forced"), tmp_path, mode="RGB").in_chans == 3


def test_transparent_pixels_take_the_background(tmp_path):
    root = make_tree(tmp_path / "pics", per_class=2)
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 200  # red everywhere, but only the left half opaque
    rgba[:, :4, 3] = 255
    Image.fromarray(rgba, "RGBA").save(root / "cat" / "cut.png")
    for background, level in (("black", 0), ("white", 255), (128, 128)):
        x = folder_mod.decode_image(root / "cat" / "cut.png", 8, "RGB", "stretch", background)
        assert (x[:, :, :4] == np.array([200, 0, 0]).reshape(3, 1, 1)).all()
        assert (x[:, :, 4:] == level).all()
    ds = load(root, tmp_path, background="white", test_fraction=0.25)
    images = torch.cat([ds.train_images, ds.test_images])
    assert ((images[:, :, :, 4:] == 255).flatten(1).all(1)).sum() == 1  # the option is used
