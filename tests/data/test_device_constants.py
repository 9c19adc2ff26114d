"""Constant tensors of the data path are built once per device and dtype (issue 23): on a GPU
each ``torch.tensor(values, device=...)`` is a blocking host-to-device copy."""

from __future__ import annotations

import torch

from cnnlab.data.augment_core import constant, stats
from cnnlab.data.loader import BatchLoader, Normalizer


def test_normalizer_scale_shift_is_the_formula_and_built_once():
    norm = Normalizer((0.25, 0.5), (0.2, 0.4))
    scale, shift = norm.scale_shift(torch.device("cpu"))
    again = norm.scale_shift("cpu")
    assert again[0] is scale and again[1] is shift  # cached, not rebuilt
    # (x / 255 - mean) / std == x * scale + shift, computed by hand in float64
    x = torch.randint(0, 256, (3, 2, 4, 4), dtype=torch.uint8)
    mean = torch.tensor([0.25, 0.5], dtype=torch.float64).view(1, 2, 1, 1)
    std = torch.tensor([0.2, 0.4], dtype=torch.float64).view(1, 2, 1, 1)
    want = (x.double() / 255 - mean) / std
    assert torch.allclose(norm(x).double(), want, atol=1e-5)
    assert norm.scale_shift("cpu", torch.float64)[0].dtype == torch.float64


def test_cached_constants_made_in_inference_mode_still_work_with_autograd():
    norm = Normalizer((0.123,), (0.456,))
    with torch.inference_mode():
        norm(torch.zeros(1, 1, 2, 2, dtype=torch.uint8))  # first use: inside inference mode
        table = constant([1.5, 2.5, 3.125], torch.device("cpu"))
    scale, _ = norm.scale_shift("cpu")
    w = torch.ones(1, 1, 1, 1, requires_grad=True)
    (w * scale).sum().backward()  # saving the cached tensor for backward must be allowed
    assert torch.allclose(w.grad, scale.sum())
    assert not scale.is_inference() and not table.is_inference()
    assert constant([1.5, 2.5, 3.125], torch.device("cpu")) is table


def test_stats_match_the_normaliser_and_name_a_channel_mismatch():
    x = torch.zeros(2, 3, 4, 4, dtype=torch.float64)
    m, s = stats((0.1, 0.2, 0.3), (1.0, 2.0, 3.0), x)
    assert m.dtype == torch.float64 and m.shape == (1, 3, 1, 1)
    assert m.flatten().tolist() == [0.1, 0.2, 0.3] and s.flatten().tolist() == [1.0, 2.0, 3.0]
    try:
        stats((0.1,), (1.0,), x)
    except ValueError as err:
        assert "1 channel(s) but the batch has 3" in str(err)
    else:  # pragma: no cover
        raise AssertionError("a channel mismatch must raise")


def test_loader_batches_equal_the_hand_normalised_images():
    images = torch.randint(0, 256, (10, 1, 3, 3), dtype=torch.uint8)
    labels = torch.arange(10)
    norm = Normalizer((0.3,), (0.7,))
    loader = BatchLoader(images, labels, batch_size=4, normalizer=norm)
    x = torch.cat([b for b, _ in loader])
    assert torch.allclose(x.double(), (images.double() / 255 - 0.3) / 0.7, atol=1e-5)
