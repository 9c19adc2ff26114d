"""Data sets: lookup order, layouts, partial sets, the embedded sample, real Fashion-MNIST."""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnlab.data.datasets import (
    FASHION_MNIST_CLASSES,
    DatasetNotFoundError,
    ImageDataset,
    dataset_dir_candidates,
    default_cache_dir,
    list_datasets,
    load_dataset,
)
from cnnlab.data.idx import IdxError, read_idx, write_idx
from cnnlab.registry import RegistryError

REAL = Path("/work/shared/data/fashion-mnist")
STEMS = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
]


def make_set(directory: Path, n_train: int = 20, n_test: int = 10, gz: bool = True) -> Path:
    """Write a tiny MNIST-style set (4x4 images, labels i % 10) into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(n_train)
    arrays = [
        rng.integers(0, 256, (n_train, 4, 4), dtype=np.uint8),
        (np.arange(n_train) % 10).astype(np.uint8),
        rng.integers(0, 256, (n_test, 4, 4), dtype=np.uint8),
        (np.arange(n_test) % 10).astype(np.uint8),
    ]
    for stem, arr in zip(STEMS, arrays, strict=True):
        write_idx(directory / (stem + (".gz" if gz else "")), arr)
    return directory


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """No CNNLAB_DATA and an empty HOME, so the real user cache never leaks into a test."""
    monkeypatch.delenv("CNNLAB_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def test_default_cache_dir_follows_home(tmp_path):
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "cnnlab" / "data"


def test_registered():
    assert {"fashion-mnist", "mnist", "synthetic"} <= set(list_datasets())
    with pytest.raises(RegistryError, match="no option 'colour'"):
        load_dataset("mnist", colour=True)


@pytest.mark.parametrize("nested", [False, True], ids=["direct", "subdir"])
def test_explicit_dir_both_layouts(tmp_path, nested):
    root = tmp_path / "data"
    make_set(root / "mnist" if nested else root, n_train=30)
    ds = load_dataset("mnist", root)
    assert len(ds.train_labels) == 30 and len(ds.test_labels) == 10
    assert ds.source == str(root / "mnist" if nested else root) and ds.notice is None
    assert ds.train_images.shape == (30, 1, 4, 4) and ds.train_images.dtype == torch.uint8
    expected = read_idx(Path(ds.source) / "train-images-idx3-ubyte.gz")
    assert torch.equal(ds.train_images[:, 0], torch.from_numpy(expected))
    assert ds.classes == tuple("0123456789")


def test_raw_files_accepted(tmp_path):
    make_set(tmp_path / "raw", gz=False)
    assert len(load_dataset("fashion-mnist", tmp_path / "raw").train_labels) == 20


def test_lookup_order(tmp_path, monkeypatch):
    explicit, env = tmp_path / "explicit", tmp_path / "env"
    make_set(explicit / "mnist", n_train=11)
    make_set(env, n_train=12)  # env var, direct layout
    make_set(default_cache_dir() / "mnist", n_train=13)
    monkeypatch.setenv("CNNLAB_DATA", str(env))
    assert len(load_dataset("mnist", explicit).train_labels) == 11
    assert len(load_dataset("mnist").train_labels) == 12
    monkeypatch.delenv("CNNLAB_DATA")
    assert len(load_dataset("mnist").train_labels) == 13


def test_env_var_subdir_and_fallthrough_to_cache(tmp_path, monkeypatch):
    env = tmp_path / "env"
    make_set(env / "fashion-mnist", n_train=14)
    make_set(default_cache_dir() / "mnist", n_train=15)
    monkeypatch.setenv("CNNLAB_DATA", str(env))
    assert len(load_dataset("fashion-mnist").train_labels) == 14
    assert len(load_dataset("mnist").train_labels) == 15  # env holds no mnist: next place


def test_candidates_in_order(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "env"))
    cache = default_cache_dir()
    assert dataset_dir_candidates("mnist") == [
        tmp_path / "env" / "mnist",
        tmp_path / "env",
        cache / "mnist",
        cache,
    ]
    assert dataset_dir_candidates("mnist", tmp_path / "d") == [
        tmp_path / "d" / "mnist",
        tmp_path / "d",
    ]


def test_dir_named_for_other_dataset_is_not_read_as_mnist(tmp_path):
    make_set(tmp_path / "fashion-mnist")
    with pytest.raises(DatasetNotFoundError, match="named after another data set"):
        load_dataset("mnist", tmp_path / "fashion-mnist")


def test_explicit_dir_without_data_is_an_error_not_the_sample(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("fashion-mnist", empty)
    msg = str(info.value)
    assert str(empty) in msg and "cnnlab data fetch fashion-mnist" in msg
    assert all(stem in msg for stem in STEMS)
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        load_dataset("fashion-mnist", tmp_path / "missing")


def test_env_var_to_missing_directory_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "typo"))
    with pytest.raises(DatasetNotFoundError, match=r"CNNLAB_DATA directory .*typo does not exist"):
        load_dataset("fashion-mnist")


@pytest.mark.parametrize("place", ["explicit", "env", "cache"])
def test_partial_set_is_an_error(tmp_path, monkeypatch, place):
    root = {"explicit": tmp_path / "x", "env": tmp_path / "env", "cache": default_cache_dir()}
    folder = make_set(root[place] / "fashion-mnist")
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    if place == "env":
        monkeypatch.setenv("CNNLAB_DATA", str(root["env"]))
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("fashion-mnist", root["explicit"] if place == "explicit" else None)
    msg = str(info.value)
    assert "incomplete" in msg and "3 of 4" in msg and str(folder) in msg
    assert "t10k-labels-idx1-ubyte" in msg and "train-labels" not in msg.split("missing")[1][:40]


def test_bad_file_in_data_dir_names_it(tmp_path):
    folder = make_set(tmp_path / "d")
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.full(20, 10, dtype=np.uint8))
    with pytest.raises(IdxError, match=r"train-labels-idx1-ubyte\.gz: 20 label"):
        load_dataset("mnist", folder)


def test_sample_fallback_is_stratified_with_notice():
    ds = load_dataset("fashion-mnist")
    assert ds.source == "embedded sample" and ds.classes == FASHION_MNIST_CLASSES
    assert ds.train_images.shape == (6000, 1, 28, 28) and ds.test_images.shape == (1000, 1, 28, 28)
    assert ds.train_images.dtype == torch.uint8 and ds.train_labels.dtype == torch.int64
    assert collections.Counter(ds.train_labels.tolist()) == dict.fromkeys(range(10), 600)
    assert collections.Counter(ds.test_labels.tolist()) == dict.fromkeys(range(10), 100)
    assert ds.class_counts.tolist() == [600] * 10
    for fragment in (
        "6,000",
        "1,000",
        "stratified",
        "NOT comparable",
        "cnnlab data fetch fashion-mnist",
        "--data-dir DIR",
        "CNNLAB_DATA",
    ):
        assert fragment in ds.notice


def test_sample_can_be_refused_and_mnist_has_none():
    with pytest.raises(DatasetNotFoundError, match="embedded sample was disabled"):
        load_dataset("fashion-mnist", allow_sample=False)
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("mnist")
    msg = str(info.value)
    assert "mnist data set not found" in msg and "cnnlab data fetch mnist" in msg
    assert str(default_cache_dir() / "mnist") in msg


def test_dataset_properties_against_hand_count():
    labels = torch.tensor([2, 0, 2, 1, 2])
    ds = ImageDataset(
        "t",
        torch.zeros(5, 3, 6, 6, dtype=torch.uint8),
        labels,
        torch.zeros(2, 3, 6, 6, dtype=torch.uint8),
        torch.tensor([0, 1]),
        ("a", "b", "c", "d"),
        "test",
    )
    assert (ds.num_classes, ds.in_chans, ds.image_size) == (4, 3, 6)
    assert ds.class_counts.tolist() == [1, 1, 3, 0]
    assert "train=5" in repr(ds)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"train_images": torch.zeros(5, 1, 6, 6)}, "train_images must be contiguous uint8"),
        ({"train_labels": torch.zeros(4, dtype=torch.int64)}, "train_labels must be int64"),
        ({"test_labels": torch.tensor([0, 7])}, r"test_labels must lie in \[0, 4\)"),
        ({"test_images": torch.zeros(2, 1, 5, 5, dtype=torch.uint8)}, "test images are"),
    ],
)
def test_dataset_validation(kwargs, fragment):
    fields = dict(
        name="t",
        train_images=torch.zeros(5, 1, 6, 6, dtype=torch.uint8),
        train_labels=torch.zeros(5, dtype=torch.int64),
        test_images=torch.zeros(2, 1, 6, 6, dtype=torch.uint8),
        test_labels=torch.zeros(2, dtype=torch.int64),
        classes=tuple("abcd"),
        source="test",
    )
    with pytest.raises(ValueError, match=fragment):
        ImageDataset(**{**fields, **kwargs})


def test_non_square_image_size_raises():
    x = torch.zeros(1, 1, 4, 5, dtype=torch.uint8)
    ds = ImageDataset(
        "t",
        x,
        torch.zeros(1, dtype=torch.int64),
        x.clone(),
        torch.zeros(1, dtype=torch.int64),
        ("a",),
        "test",
    )
    with pytest.raises(ValueError, match="4x5, not square"):
        _ = ds.image_size


def test_synthetic_deterministic_balanced_and_learnable():
    kw = dict(num_classes=5, in_chans=3, image_size=12, train_size=250, test_size=100)
    a, b = load_dataset("synthetic", seed=3, **kw), load_dataset("synthetic", seed=3, **kw)
    c = load_dataset("synthetic", seed=4, **kw)
    assert torch.equal(a.train_images, b.train_images) and torch.equal(a.test_labels, b.test_labels)
    assert not torch.equal(a.train_images, c.train_images)
    assert a.train_images.shape == (250, 3, 12, 12) and a.class_counts.tolist() == [50] * 5
    # Nearest class mean, fitted on train, classifies test: the classes are learnable.
    x, y = a.train_images.flatten(1).float(), a.train_labels
    means = torch.stack([x[y == k].mean(0) for k in range(5)])
    pred = torch.cdist(a.test_images.flatten(1).float(), means).argmin(1)
    assert (pred == a.test_labels).float().mean() > 0.95


def test_synthetic_tiny_model_learns_in_few_steps():
    ds = load_dataset("synthetic", num_classes=4, image_size=8, train_size=128, test_size=64)
    torch.manual_seed(0)
    model = torch.nn.Linear(64, 4)
    x, y = ds.train_images.flatten(1).float() / 255, ds.train_labels
    for _ in range(10):  # plain gradient descent (torch.optim's first step is slow to import)
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= 2.0 * p.grad
    acc = (model(ds.test_images.flatten(1).float() / 255).argmax(1) == ds.test_labels).float()
    assert acc.mean() > 0.9


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"num_classes": 1}, "num_classes must be an integer >= 2"),
        ({"image_size": 2}, "image_size"),
        ({"train_size": 0}, "train_size"),
        ({"noise": -1.0}, "noise must be >= 0"),
    ],
)
def test_synthetic_bad_options(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        load_dataset("synthetic", **kwargs)


needs_real = pytest.mark.skipif(
    not (REAL / "train-images-idx3-ubyte.gz").is_file(),
    reason=f"the full Fashion-MNIST copy is not at {REAL}",
)


@needs_real
@pytest.mark.parametrize("where", [REAL, REAL.parent], ids=["direct", "parent"])
def test_real_fashion_mnist(where):
    ds = load_dataset("fashion-mnist", where)
    assert ds.source == str(REAL) and ds.notice is None
    assert ds.train_images.shape == (60000, 1, 28, 28) and ds.test_images.shape == (
        10000,
        1,
        28,
        28,
    )
    assert ds.train_images.dtype == torch.uint8 and ds.train_images.is_contiguous()
    assert ds.class_counts.tolist() == [6000] * 10
    assert torch.bincount(ds.test_labels).tolist() == [1000] * 10
    # The pixel mean measured independently in the copy's README: 0.2861.
    assert abs(ds.train_images.float().mean().item() / 255 - 0.2861) < 1e-4


@needs_real
def test_embedded_sample_is_drawn_from_the_real_set():
    full = load_dataset("fashion-mnist", REAL)
    sample = load_dataset("fashion-mnist")
    label_of = {
        img.tobytes(): int(lab)
        for img, lab in zip(full.train_images.numpy(), full.train_labels.numpy(), strict=True)
    }
    for img, lab in zip(sample.train_images[:300].numpy(), sample.train_labels[:300], strict=True):
        assert label_of[img.tobytes()] == int(lab)
