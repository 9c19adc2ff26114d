"""k-means weight sharing and product quantisation (Handbook §4.3)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from cnnlab.compression import build_step
from cnnlab.compression.constraints import PQWeights, SharedWeights
from cnnlab.compression.encoding import codebook_bits, decode, encode, pq_bits
from cnnlab.compression.quantization import kmeans_1d, kmeans_share, product_quantize
from cnnlab.compression.state import CompressionError, CompressState, weight_modules
from cnnlab.compression.storage import read_compressed, save_compressed


def test_kmeans_1d_on_two_obvious_clusters():
    x = torch.tensor([0.0, 0.1, 0.2, 10.0, 10.1, 10.2])
    c, codes = kmeans_1d(x, 2)
    torch.testing.assert_close(c, torch.tensor([0.1, 10.1]))
    assert codes.tolist() == [0, 0, 0, 1, 1, 1]


def test_kmeans_1d_is_a_lloyd_fixed_point():
    x = torch.randn(500, generator=torch.Generator().manual_seed(0))
    c, codes = kmeans_1d(x, 8)
    nearest = (x[:, None] - c[None, :]).abs().argmin(dim=1)
    assert torch.equal(nearest, codes)  # every value sits at its nearest centroid
    for j in range(8):  # and every centroid is the mean of its members
        assert float(c[j]) == pytest.approx(float(x[codes == j].double().mean()), abs=1e-6)


def test_storage_accounting_formula():
    # n log2(k) + 32 k bits per layer (Part E item 18); the handbook's k = 4 -> 2 bits
    assert codebook_bits(1000, 4) == 1000 * 2 + 32 * 4
    assert codebook_bits(4096, 16) == 4096 * 4 + 512
    assert codebook_bits(1000, 16, nnz=100) == 1000 + 100 * 4 + 512  # pruned: mask + codes
    # PQ (Part E item 19): m = n = 4096, k = 256, s = 512 -> about 10.7x
    ratio = 32 * 4096 * 4096 / pq_bits(4096, 4096, sub=8, k=256)
    assert ratio == pytest.approx(10.67, abs=0.01)


@pytest.mark.parametrize("bits", [2, 3, 4])
def test_kmeans_layers_use_at_most_k_values_and_store_in_log2k_bits(bits, make_model, tmp_path):
    model, spec = make_model("cnn2", size=12)
    state = CompressState(model, spec)
    details = kmeans_share(state, bits, None, None, "all")
    for _, m in weight_modules(state.model):
        assert torch.unique(m.weight).numel() <= 2**bits
    path = tmp_path / "k.safetensors"
    save_compressed(path, state.finalized(), spec=spec, encodings=state.encodings)
    tensors, _ = read_compressed(path)
    for row in details:
        key, n = f"{row['layer']}.weight", row["weights"]
        assert tensors[f"{key}::codes"].numel() == math.ceil(n * bits / 8)  # packed codes
        assert tensors[f"{key}::codebook"].numel() <= 2**bits
        assert row["storage_bits"] == codebook_bits(n, 2**bits)


def test_pruned_layers_keep_their_zeros(make_model):
    model, spec = make_model("softmax", size=8)
    with torch.no_grad():
        model.head.weight[:, ::2] = 0
    state = CompressState(model, spec, {"head.weight": {"kind": "sparse", "shape": [4, 64]}})
    kmeans_share(state, 2, None, None, "all")
    w = state.model.head.weight
    assert bool((w[:, ::2] == 0).all()) and bool((w[:, 1::2] != 0).all())
    assert torch.unique(w[w != 0]).numel() <= 4
    assert state.encodings["head.weight"]["sparse"] is True


def _shared_value_layer() -> tuple[nn.Linear, nn.Linear, torch.Tensor]:
    """A layer holding 3 shared values, a plain copy of it with its gradient, and the input."""
    torch.manual_seed(0)
    layer = nn.Linear(6, 5)
    with torch.no_grad():
        layer.weight.copy_(torch.randint(0, 3, (5, 6)).float() * 0.5 - 0.5)  # 3 shared values
    plain = nn.Linear(6, 5)
    plain.load_state_dict(layer.state_dict())
    x = torch.randn(4, 6)
    plain(x).pow(2).sum().backward()
    return layer, plain, x


def test_codebook_gradient_is_the_per_cluster_sum():
    """Fig. 4.1's rule (``grad="sum"``): the centroid gets the sum of its weights' gradients."""
    layer, plain, x = _shared_value_layer()
    before = layer.weight.detach().clone()
    param = SharedWeights.from_weight(layer.weight, sparse=False, grad="sum")
    parametrize.register_parametrization(layer, "weight", param)
    assert torch.equal(layer.weight, before)  # the parametrisation changes no value
    layer(x).pow(2).sum().backward()
    expected = torch.zeros(3).index_add_(0, param.codes.reshape(-1), plain.weight.grad.reshape(-1))
    torch.testing.assert_close(param.codebook.grad, expected)


def test_default_codebook_gradient_is_the_per_cluster_mean_and_ignores_pruned_weights():
    layer, plain, x = _shared_value_layer()
    param = SharedWeights.from_weight(layer.weight, sparse=True)  # zeros: pruned, a mask
    parametrize.register_parametrization(layer, "weight", param)
    layer(x).pow(2).sum().backward()
    w, g = plain.weight.detach(), plain.weight.grad
    for j, value in enumerate(param.codebook.detach()):
        members = (w == value) & (w != 0)  # the pruned zeros are nobody's members
        if members.any():
            torch.testing.assert_close(param.codebook.grad[j], g[members].mean())
        else:
            assert param.codebook.grad[j] == 0


def test_pq_code_vector_gradient_is_the_mean_over_the_rows_sharing_it():
    torch.manual_seed(0)
    layer = nn.Linear(4, 6, bias=False)
    with torch.no_grad():  # 2 subspaces of 2 columns; rows 0-2 share one vector, 3-5 another
        layer.weight.copy_(torch.tensor([[1.0, 2, 3, 4]] * 3 + [[5.0, 6, 7, 8]] * 3))
    plain = nn.Linear(4, 6, bias=False)
    plain.load_state_dict(layer.state_dict())
    x = torch.randn(3, 4)
    plain(x).pow(2).sum().backward()
    for grad, reduce in (("mean", torch.mean), ("sum", torch.sum)):
        param = PQWeights.from_weight(layer.weight, sub=2, grad=grad)
        parametrize.register_parametrization(layer, "weight", param)
        layer(x).pow(2).sum().backward()
        g = plain.weight.grad.reshape(6, 2, 2)  # (rows, subspace, sub-vector)
        for s in range(2):
            for code in range(2):
                rows = param.codes[:, s] == code
                torch.testing.assert_close(param.books.grad[s, code], reduce(g[rows, s], dim=0))
        parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)


def test_unknown_codebook_gradient_rule_is_refused():
    with pytest.raises(CompressionError, match="codebook_grad must be one of mean, sum"):
        build_step({"name": "kmeans", "codebook_grad": "median"})


def test_product_quantisation_exact_with_enough_codes_and_round_trips():
    w = torch.randn(6, 8, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(product_quantize(w, sub=2, k=6), w)  # k >= m rows: exact
    approx = product_quantize(w, sub=2, k=3)
    for j in range(4):  # each subspace holds at most k distinct sub-vectors
        assert torch.unique(approx[:, 2 * j : 2 * j + 2], dim=0).shape[0] <= 3
    tensors, meta = encode("w", approx, {"kind": "pq", "sub": 2, "k": 3})
    assert torch.equal(decode("w", tensors, meta), approx)
    assert tensors["w::codebooks"].shape == (4, 3, 2)
