"""Preprocessing fitted on the training split: mean image, PCA/ZCA whitening, no test leakage."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnlab.data.datasets import load_dataset
from cnnlab.data.loader import BatchLoader, Normalizer
from cnnlab.data.preprocess import (
    PREPROCESSORS,
    MeanImage,
    PCAWhitening,
    ZCAWhitening,
    build_preprocess,
    validate_preprocess,
)
from cnnlab.registry import RegistryError


def correlated(n=3000, shape=(3, 2, 2), seed=0) -> torch.Tensor:
    """Float images with strongly correlated, unequal-variance values and a non-zero mean."""
    gen = torch.Generator().manual_seed(seed)
    d = int(np.prod(shape))
    mix = torch.randn(d, d, generator=gen)
    return (torch.randn(n, d, generator=gen) @ mix + 3.0).view(n, *shape)


def covariance(x: torch.Tensor) -> torch.Tensor:
    flat = x.flatten(1).double()
    flat = flat - flat.mean(0)
    return flat.T @ flat / len(flat)


@pytest.mark.parametrize("cls", [PCAWhitening, ZCAWhitening])
def test_whitening_gives_identity_covariance_on_its_training_data(cls):
    x = correlated()
    white = cls(eps=1e-12).fit(x)
    out = white(x)
    assert out.shape == x.shape
    torch.testing.assert_close(
        covariance(out), torch.eye(12, dtype=torch.float64), atol=1e-4, rtol=0
    )
    assert out.flatten(1).mean(0).abs().max() < 1e-4  # centred with the training mean


def test_whitening_matches_the_formulas_computed_with_numpy():
    x = correlated(n=500)
    flat = x.flatten(1).double().numpy()
    centred = flat - flat.mean(0)
    lam, u = np.linalg.eigh(centred.T @ centred / len(flat))
    eps = 0.1
    pca_np = centred @ u @ np.diag((lam + eps) ** -0.5)
    zca_np = pca_np @ u.T
    zca = ZCAWhitening(eps).fit(x)(x).flatten(1).double().numpy()
    np.testing.assert_allclose(zca, zca_np, atol=1e-4)
    pca = PCAWhitening(eps).fit(x)(x).flatten(1).double().numpy()
    # Same components up to order (ours: decreasing variance) and sign.
    np.testing.assert_allclose(np.abs(pca), np.abs(pca_np[:, ::-1]), atol=1e-4)


def test_zca_matrix_is_symmetric_and_eps_damps_small_components():
    x = correlated(n=400)
    zca = ZCAWhitening(eps=1e-3).fit(x)
    torch.testing.assert_close(zca.matrix, zca.matrix.T, atol=1e-5, rtol=1e-5)
    big = ZCAWhitening(eps=100.0).fit(x)
    assert covariance(big(x)).diagonal().max() < 1.0  # large eps: shrink, not whiten
    assert torch.all(zca.eigvals[:-1] >= zca.eigvals[1:])  # descending


def test_mean_image_subtracts_the_training_mean_and_resizes():
    imgs = torch.randint(0, 256, (20, 1, 4, 4), dtype=torch.uint8)
    mean_img = MeanImage().fit(imgs)
    torch.testing.assert_close(mean_img.mean, imgs.float().mean(0) / 255)
    x = imgs.float() / 255
    torch.testing.assert_close(mean_img(x), x - imgs.float().mean(0) / 255)
    const = MeanImage().fit(torch.full((3, 1, 4, 4), 0.25))
    assert torch.allclose(const(torch.full((2, 1, 8, 8), 0.25)), torch.zeros(2, 1, 8, 8))


def test_not_fitted_and_shape_errors():
    with pytest.raises(RuntimeError, match="call fit"):
        ZCAWhitening()(torch.zeros(1, 1, 2, 2))
    white = PCAWhitening().fit(correlated(n=50))
    with pytest.raises(ValueError, match="fitted on 12 values per image"):
        white(torch.zeros(1, 1, 2, 2))
    with pytest.raises(RegistryError, match="eps must be"):
        build_preprocess([{"name": "zca_whitening", "eps": -1}], correlated(n=10))
    with pytest.raises(RegistryError, match="unknown preprocess"):
        build_preprocess(["zca"], correlated(n=10))
    assert PREPROCESSORS.names() == ["mean_image", "pca_whitening", "zca_whitening"]


def test_no_test_statistics_leak_into_the_fitted_transform():
    ds = load_dataset("synthetic", train_size=200, test_size=50, in_chans=3, image_size=6)
    norm = Normalizer.fit(ds.train_images)
    specs = ["mean_image", {"name": "zca_whitening", "eps": 0.1}]
    pipe = build_preprocess(specs, ds.train_images, normalizer=norm)
    # The fitted mean is the training split's (as the loader presents it), not train + test.
    train_mean = norm(ds.train_images).mean(0)
    both_mean = norm(torch.cat([ds.train_images, ds.test_images])).mean(0)
    torch.testing.assert_close(pipe.steps[0].mean, train_mean, atol=1e-5, rtol=0)
    assert (pipe.steps[0].mean - both_mean).abs().max() > 1e-3
    # Changing the test set (even drastically) cannot change the transform.
    other = 255 - ds.test_images
    again = build_preprocess(specs, ds.train_images, normalizer=norm)
    assert all(
        torch.equal(a, b)
        for s1, s2 in zip(pipe.steps, again.steps, strict=True)
        for a, b in zip(s1.state_dict().values(), s2.state_dict().values(), strict=True)
    )
    loader = BatchLoader(other, ds.test_labels, batch_size=50, normalizer=norm, transform=pipe)
    x, _ = next(iter(loader))
    torch.testing.assert_close(x, pipe(norm(other)))


def test_pipeline_steps_are_fitted_on_the_output_of_the_previous_ones():
    x = correlated(n=800)
    pipe = build_preprocess(["mean_image", "zca_whitening"], x)
    zca_alone = ZCAWhitening().fit(x - x.mean(0))
    torch.testing.assert_close(pipe.steps[1].mean, torch.zeros(12), atol=1e-4, rtol=0)
    torch.testing.assert_close(pipe(x), zca_alone(x - x.mean(0)), atol=1e-3, rtol=1e-3)
    assert len(build_preprocess(None, x)) == 0


def test_validate_without_data():
    validate_preprocess(["mean_image", {"name": "pca_whitening", "eps": 0.1}])
    validate_preprocess(None)
    with pytest.raises(RegistryError, match="has no option 'epsilon'"):
        validate_preprocess([{"name": "zca_whitening", "epsilon": 0.1}])
    with pytest.raises(RegistryError, match="expected a list of steps"):
        validate_preprocess("mean_image")
