"""The patch-whitening layer against the covariance of the patches it was fitted on."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cnnlab.nn.whitening import PatchWhitening, fit_whitening


def correlated_images(n: int = 64, c: int = 2, side: int = 9) -> torch.Tensor:
    """Images whose neighbouring pixels are strongly correlated (a blurred noise field + offset)."""
    torch.manual_seed(0)
    noise = torch.randn(n, c, side + 2, side + 2, dtype=torch.float64)
    blur = torch.ones(c, 1, 3, 3, dtype=torch.float64) / 9
    x = F.conv2d(noise, blur, groups=c) * 3 + 0.5  # (n, c, side, side)
    return x + torch.tensor([0.3, -1.0][:c], dtype=torch.float64).view(1, c, 1, 1)


def output_patches(layer: PatchWhitening, x: torch.Tensor) -> torch.Tensor:
    """(N*L, out): one row per patch position, the layer's outputs there."""
    out = layer(x)  # (N, out, h, w)
    return out.permute(0, 2, 3, 1).reshape(-1, out.shape[1])


@pytest.mark.parametrize("mode", ["zca", "pca"])
@pytest.mark.parametrize("kernel", [2, 3])
def test_output_covariance_is_identity_on_the_fitted_patches(mode: str, kernel: int) -> None:
    x = correlated_images()
    layer = PatchWhitening(2, kernel, mode=mode, eps=0.0, negate=False).double().eval()
    layer.fit(x)
    y = output_patches(layer, x)
    d = 2 * kernel * kernel
    torch.testing.assert_close(y.mean(0), torch.zeros(d, dtype=torch.float64), atol=1e-9, rtol=0)
    cov = (y.T @ y) / y.shape[0]  # population covariance, as fitted
    torch.testing.assert_close(cov, torch.eye(d, dtype=torch.float64), atol=1e-8, rtol=0)
    # The input patches themselves were far from white: neighbouring pixels correlate.
    cols = F.unfold(x, kernel).transpose(1, 2).reshape(-1, d)
    cov_in = torch.cov(cols.T)
    assert (cov_in - torch.diag(cov_in.diagonal())).abs().max() > 0.3


def test_zca_filters_are_symmetric_and_pca_rows_are_ordered_by_variance() -> None:
    x = correlated_images()
    zca = PatchWhitening(2, 2, mode="zca", eps=0.0, negate=False).double()
    pca = PatchWhitening(2, 2, mode="pca", eps=0.0, negate=False).double()
    zca.fit(x)
    pca.fit(x)
    w = zca.weight.view(8, 8)
    torch.testing.assert_close(w, w.T)  # U diag U^T
    # PCA's first filter, unscaled, is the direction of largest variance of the patches.
    cols = F.unfold(x, 2).transpose(1, 2).reshape(-1, 8)
    _lam, u = torch.linalg.eigh(torch.cov(cols.T, correction=0))
    first = pca.weight.view(8, 8)[0]
    cos = (first / first.norm()) @ u[:, -1]
    assert abs(cos.item()) == pytest.approx(1.0, abs=1e-9)


def test_negate_appends_the_negated_filters_and_eps_shrinks_the_scale() -> None:
    x = correlated_images()
    layer = PatchWhitening(2, 2, eps=0.0).double()
    layer.fit(x)
    y = output_patches(layer.eval(), x)
    assert layer.out_chans == 16 and y.shape[1] == 16
    torch.testing.assert_close(y[:, 8:], -y[:, :8])
    damped = PatchWhitening(2, 2, eps=1.0, negate=False).double()
    damped.fit(x)
    var = output_patches(damped.eval(), x).var(0)
    assert (var < 1).all()  # lam / (lam + eps) < 1


def test_fits_itself_on_the_first_training_batch_only() -> None:
    x = correlated_images().float()
    layer = PatchWhitening(2, 2)
    layer.eval()
    layer(x)
    assert not layer.fitted  # evaluation never fits (summaries run random inputs)
    layer.train()
    layer(x)
    assert layer.fitted
    fitted = layer.weight.detach().clone()
    layer(x * 5 + 3)  # a later batch changes nothing
    torch.testing.assert_close(layer.weight.detach(), fitted, rtol=0, atol=0)


def test_frozen_or_trainable_and_fit_whitening_helper() -> None:
    frozen, trainable = PatchWhitening(1, 2), PatchWhitening(1, 2, trainable=True)
    assert not frozen.weight.requires_grad and frozen.bias.requires_grad
    assert trainable.weight.requires_grad
    model = torch.nn.Sequential(frozen, torch.nn.GELU())
    assert fit_whitening(model, torch.randn(8, 1, 6, 6)) == 1
    assert frozen.fitted


def test_bad_input_names_the_problem() -> None:
    layer = PatchWhitening(3, 2)
    with pytest.raises(ValueError, match=r"expected images \(N, 3, H, W\)"):
        layer.fit(torch.zeros(4, 1, 8, 8))
    with pytest.raises(ValueError, match="mode must be one of zca, pca"):
        PatchWhitening(1, 2, mode="pcaa")
    with pytest.raises(ValueError, match="kernel_size"):
        PatchWhitening(1, 0)
