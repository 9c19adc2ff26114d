"""PNG encoding and embedding, checked by decoding with Pillow (an independent PNG reader)."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from cnnlab.viz.png import (
    PNG_SIGNATURE,
    encode_png,
    figure_to_png,
    new_figure,
    png_data_uri,
    scale_for,
    upscale,
)


def decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)))


@pytest.mark.parametrize("shape", [(7, 5), (4, 9, 3), (1, 1), (3, 2, 1)])
def test_encode_png_round_trips_through_pillow(shape):
    arr = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    out = decode(encode_png(arr))
    assert np.array_equal(out, arr.reshape(out.shape))
    assert out.shape == (shape if len(shape) == 2 or shape[2] == 3 else shape[:2])


@pytest.mark.parametrize(
    ("arr", "message"),
    [
        (np.zeros((4, 4), dtype=np.float32), "uint8"),
        (np.zeros((4, 4, 4), dtype=np.uint8), "(H, W, 3)"),
        (np.zeros((0, 4), dtype=np.uint8), "empty"),
    ],
)
def test_encode_png_rejects_bad_arrays(arr, message):
    with pytest.raises(ValueError, match=message):
        encode_png(arr)


def test_data_uri_embeds_the_exact_bytes():
    png = encode_png(np.full((2, 3), 200, dtype=np.uint8))
    uri = png_data_uri(png)
    assert uri.startswith("data:image/png;base64,")
    assert base64.b64decode(uri.split(",", 1)[1]) == png
    with pytest.raises(ValueError, match="not a PNG"):
        png_data_uri(b"GIF89a")


def test_figure_to_png_renders_without_pyplot():
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    fig = new_figure(2, 1)
    fig.subplots().plot([0, 1], [1, 0])
    png = figure_to_png(fig, dpi=50)
    assert png.startswith(PNG_SIGNATURE)
    assert decode(png).shape[:2] == (50, 100)  # 1 x 2 inches at 50 dpi
    assert plt.get_fignums() == before  # nothing registered in pyplot's global list


def test_upscale_repeats_pixels_and_scale_for_reaches_the_target():
    arr = np.array([[1, 2], [3, 4]], dtype=np.uint8)
    assert upscale(arr, 2).tolist() == [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]]
    assert upscale(arr, 1) is arr
    assert scale_for(28, 64) == 3
    assert scale_for(12, 80) == 7
    assert scale_for(200, 64) == 1
    assert scale_for(1, 1000) == 8  # capped
