"""LocalResponseNorm against a direct loop over eq. (3.1), torch's LRN, and l2 normalisation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnlab.nn import LocalResponseNorm


def lrn_loop(a: torch.Tensor, n: int, alpha: float, beta: float, k: float) -> torch.Tensor:
    """Eq. (3.1) literally: window max(0, d - n//2) .. min(N-1, d + n//2), alpha not divided."""
    channels = a.shape[1]
    out = torch.empty_like(a)
    for d in range(channels):
        lo, hi = max(0, d - n // 2), min(channels - 1, d + n // 2)
        s = a[:, lo : hi + 1].pow(2).sum(dim=1)
        out[:, d] = a[:, d] / (k + alpha * s).pow(beta)
    return out


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 20])
@pytest.mark.parametrize(("alpha", "beta", "k"), [(1e-4, 0.75, 2.0), (0.5, 0.5, 1.0)])
def test_matches_direct_loop(n: int, alpha: float, beta: float, k: float) -> None:
    torch.manual_seed(n)
    a = torch.randn(2, 9, 4, 3, dtype=torch.float64) * 3
    got = LocalResponseNorm(n, alpha, beta, k)(a)
    torch.testing.assert_close(got, lrn_loop(a, n, alpha, beta, k))


def test_even_size_window_covers_n_plus_one_channels() -> None:
    # With n = 2 the handbook window d-1 .. d+1 has 3 channels: with all-ones input, a middle
    # channel sees a sum of 3, an edge channel a sum of 2.
    a = torch.ones(1, 5, 1, 1, dtype=torch.float64)
    out = LocalResponseNorm(2, alpha=1.0, beta=1.0, k=0.0)(a).flatten()
    torch.testing.assert_close(out, torch.tensor([1 / 2, 1 / 3, 1 / 3, 1 / 3, 1 / 2]).double())


@pytest.mark.parametrize("n", [1, 3, 5, 7])
def test_alpha_over_n_is_torch_convention(n: int) -> None:
    torch.manual_seed(0)
    a = torch.randn(3, 11, 5, 5, dtype=torch.float64)
    ours = LocalResponseNorm(n, alpha=0.3, beta=0.75, k=2.0, alpha_over_n=True)(a)
    ref = nn.LocalResponseNorm(n, alpha=0.3, beta=0.75, k=2.0)(a)
    torch.testing.assert_close(ours, ref)


@pytest.mark.parametrize("n", [3, 5])
def test_handbook_convention_is_torch_with_alpha_times_n(n: int) -> None:
    torch.manual_seed(1)
    a = torch.randn(2, 8, 6, 6, dtype=torch.float64)
    ours = LocalResponseNorm(n, alpha=1e-2, beta=0.75, k=2.0)(a)
    ref = nn.LocalResponseNorm(n, alpha=1e-2 * n, beta=0.75, k=2.0)(a)
    torch.testing.assert_close(ours, ref)
    # ...and it really differs from torch's LRN with the same alpha (the conventions differ).
    assert not torch.allclose(ours, nn.LocalResponseNorm(n, 1e-2, 0.75, 2.0)(a))


def test_l2_normalisation_special_case() -> None:
    # Handbook eq. (3.2): k=0, alpha=1, beta=0.5 with a window covering all N channels at every d
    # (n//2 >= N-1, i.e. n = 2N-1) divides each channel vector by its l2 norm.
    torch.manual_seed(2)
    channels = 6
    a = torch.randn(2, channels, 4, 4, dtype=torch.float64)
    got = LocalResponseNorm(2 * channels - 1, alpha=1.0, beta=0.5, k=0.0)(a)
    torch.testing.assert_close(got, a / a.norm(dim=1, keepdim=True))
    torch.testing.assert_close(got.norm(dim=1), torch.ones(2, 4, 4, dtype=torch.float64))


def test_gradient_matches_finite_differences() -> None:
    torch.manual_seed(3)
    a = torch.randn(1, 5, 2, 2, dtype=torch.float64, requires_grad=True)
    lrn = LocalResponseNorm(3, alpha=0.5, beta=0.75, k=1.0)
    assert torch.autograd.gradcheck(lrn, (a,))


def test_accepts_any_trailing_dims_and_rejects_bad_input() -> None:
    a = torch.randn(2, 7, 10, dtype=torch.float64)
    torch.testing.assert_close(LocalResponseNorm(5)(a), lrn_loop(a, 5, 1e-4, 0.75, 2.0))
    with pytest.raises(ValueError, match="size must be a positive integer"):
        LocalResponseNorm(0)
    with pytest.raises(ValueError, match=r"expects \(B, C, \.\.\.\) input"):
        LocalResponseNorm(5)(torch.randn(4))
