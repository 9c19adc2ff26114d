"""Softmax weight templates and first-layer filter mosaics, against hand computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib import colormaps

from cnnlab.models import create_model
from cnnlab.viz.png import PNG_SIGNATURE, figure_to_png
from cnnlab.viz.weights import (
    GAP_COLOUR,
    filter_grid,
    filter_mosaic,
    first_conv,
    pixel_classifier,
    plot_filters,
    plot_weight_maps,
    weight_map_images,
    weight_maps,
)


def test_weight_maps_put_each_weight_at_its_pixel():
    k, c, h, w = 3, 2, 4, 5
    weight = torch.randn(k, c * h * w)
    maps = weight_maps(weight, (c, h, w))
    assert maps.shape == (k, c, h, w)
    for cls, ch, y, x in [(0, 0, 0, 0), (2, 1, 3, 4), (1, 0, 2, 3)]:
        flat = ch * h * w + y * w + x  # row-major order of a flattened (C, H, W) image
        assert maps[cls, ch, y, x] == pytest.approx(weight[cls, flat].item())
    with pytest.raises(ValueError, match=r"expected \(K, 40\)"):
        weight_maps(torch.randn(3, 39), (c, h, w))


def test_grey_templates_use_a_diverging_map_centred_on_zero():
    weight = torch.zeros(2, 4)
    weight[0, 0], weight[0, 1], weight[1, 2] = 2.0, -2.0, 1.0
    images, vmax = weight_map_images(weight, (1, 2, 2), clip=100)
    assert vmax == 2.0  # one scale shared by all classes
    cmap = colormaps["RdBu_r"]

    def rgb(t):
        return (np.clip(np.asarray(cmap(t)[:3]), 0, 1) * 255).round().astype(np.uint8).tolist()

    assert images[0, 0, 0].tolist() == rgb(1.0)  # +vmax: darkest red
    assert images[0, 0, 1].tolist() == rgb(0.0)  # -vmax: darkest blue
    assert images[0, 1, 0].tolist() == rgb(0.5)  # 0: the centre (near white)
    assert images[1, 1, 0].tolist() == rgb(0.75)  # +vmax/2
    red, _, blue = images[0, 0, 0]
    assert red > blue


def test_template_scale_ignores_a_few_outliers():
    weight = torch.linspace(-1, 1, 2 * 100).reshape(2, 100)
    weight[0, 0] = -50.0  # one extreme pixel
    images, vmax = weight_map_images(weight, (1, 10, 10))
    assert vmax == pytest.approx(np.percentile(np.abs(weight.numpy()), 99))
    assert vmax < 2
    blue = (np.clip(np.asarray(colormaps["RdBu_r"](0.0)[:3]), 0, 1) * 255).round()
    assert images[0, 0, 0].tolist() == blue.tolist()  # the outlier saturates
    _, only_zeros = weight_map_images(torch.zeros(2, 4), (1, 2, 2))
    assert only_zeros == 1.0  # all-zero weights: no division by zero


def test_rgb_templates_are_colour_images_with_grey_zero():
    weight = torch.zeros(1, 3 * 1 * 2)
    weight[0, 0] = 1.0  # red channel, pixel (0, 0)
    images, _ = weight_map_images(weight, (3, 1, 2), clip=100)
    assert images.shape == (1, 1, 2, 3)
    assert images[0, 0, 0].tolist() == [255, 128, 128]
    assert images[0, 0, 1].tolist() == [128, 128, 128]


def test_plot_weight_maps_has_one_titled_panel_per_class():
    classes = ["T-shirt", "Trouser", "Bag", "Coat", "Shirt"]
    fig = plot_weight_maps(torch.randn(5, 36), (1, 6, 6), classes)
    panels = [ax for ax in fig.axes if ax.images and ax.get_title()]
    assert [ax.get_title() for ax in panels] == classes
    assert figure_to_png(fig).startswith(PNG_SIGNATURE)
    with pytest.raises(ValueError, match="4 class names"):
        plot_weight_maps(torch.randn(5, 36), (1, 6, 6), classes[:4])


@pytest.mark.parametrize(("n", "rows", "cols"), [(1, 1, 1), (6, 2, 4), (32, 4, 8), (96, 7, 14)])
def test_filter_grid(n, rows, cols):
    assert filter_grid(n) == (rows, cols)
    assert rows * cols >= n > (rows - 1) * cols


def test_filter_mosaic_tiles_every_filter_normalised_on_its_own():
    o, k = 7, 3
    weight = torch.randn(o, 1, k, k) * torch.arange(1, o + 1).view(o, 1, 1, 1)
    mosaic = filter_mosaic(weight)
    rows, cols = filter_grid(o)
    assert mosaic.shape == (1 + rows * (k + 1), 1 + cols * (k + 1), 3)
    for idx in range(rows * cols):
        r, c = divmod(idx, cols)
        tile = mosaic[1 + r * (k + 1) : 1 + r * (k + 1) + k, 1 + c * (k + 1) : 1 + c * (k + 1) + k]
        if idx < o:
            w = weight[idx, 0].numpy().astype(np.float64)
            expected = ((w - w.min()) / (w.max() - w.min()) * 255).round()
            assert np.array_equal(tile[..., 0], expected)
            assert tile.min() == 0 and tile.max() == 255  # full contrast for every filter
        else:
            assert (tile == GAP_COLOUR).all()  # empty slot
    gaps = mosaic[0]  # the top border row is all gap colour
    assert (gaps == GAP_COLOUR).all()


def test_rgb_filters_keep_their_colour_and_constant_filters_are_grey():
    weight = torch.zeros(2, 3, 1, 1)
    weight[0, 0] = 1.0  # filter 0: only red
    mosaic = filter_mosaic(weight)
    assert mosaic[1, 1].tolist() == [255, 0, 0]
    assert mosaic[1, 3].tolist() == [128, 128, 128]  # constant filter: mid-grey, no NaN
    assert figure_to_png(plot_filters(torch.randn(16, 3, 5, 5), title="conv1")).startswith(
        PNG_SIGNATURE
    )


def test_layers_found_on_zoo_models():
    cnn = create_model("cnn1", num_classes=10, in_chans=1, input_size=28)
    _, conv = first_conv(cnn)
    assert isinstance(conv, torch.nn.Conv2d) and conv.in_channels == 1
    assert pixel_classifier(cnn, (1, 28, 28), 10) is None
    soft = create_model("softmax", num_classes=10, in_chans=1, input_size=28)
    assert first_conv(soft) is None
    name, linear = pixel_classifier(soft, (1, 28, 28), 10)
    assert name == "head"
    assert linear.weight.shape == (10, 784)
    assert pixel_classifier(soft, (1, 28, 28), 7) is None
