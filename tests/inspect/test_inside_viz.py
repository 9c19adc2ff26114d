"""The "inside" pictures: heat-map overlays, feature-map mosaics and figure rendering."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib import colormaps

from cnnlab.inspect.features import SparsityRow
from cnnlab.viz.feature_plots import (
    feature_mosaic,
    filters_png,
    heat_overlay,
    normalise,
    plot_overlays,
    plot_sparsity,
)
from cnnlab.viz.png import figure_to_png
from cnnlab.viz.weights import GAP_COLOUR


def test_normalise_clips_negatives_and_scales_to_one():
    np.testing.assert_allclose(normalise(torch.tensor([[-2.0, 0.0], [1.0, 4.0]])),
                               [[0, 0], [0.25, 1]])  # fmt: skip
    assert normalise(np.zeros((2, 2))).max() == 0


def test_heat_overlay_blends_image_and_colour_map():
    image = np.full((1, 4, 4), 100, dtype=np.uint8)
    heat = np.zeros((2, 2))
    heat[0, 0] = 3.0
    assert np.array_equal(heat_overlay(image, np.zeros((4, 4)), alpha=0.0)[..., 0], image[0])
    full = heat_overlay(image, heat, alpha=1.0)  # 2x2 heat resized to 4x4: hot top-left
    assert full.shape == (4, 4, 3)
    hot = (np.array(colormaps["jet"](1.0)[:3]) * 255).round()
    cold = (np.array(colormaps["jet"](0.0)[:3]) * 255).round()
    assert np.abs(full[0, 0] - hot).max() <= 1 and np.abs(full[3, 3] - cold).max() <= 1
    with pytest.raises(ValueError, match="expected uint8 images"):
        heat_overlay(image.astype(np.float32), heat)


def test_feature_mosaic_tiles_each_channel_on_its_own_scale():
    maps = np.stack([np.arange(4.0).reshape(2, 2), 10 * np.arange(4.0).reshape(2, 2) + 5])
    mosaic = feature_mosaic(maps, cols=2, pad=1)
    assert mosaic.shape == (1 + 1 * 3, 1 + 2 * 3, 3)
    assert tuple(mosaic[0, 0]) == GAP_COLOUR
    assert np.array_equal(mosaic[1:3, 1:3], mosaic[1:3, 4:6])  # same pattern, different range
    low = (np.array(colormaps["viridis"](0.0)[:3]) * 255).round()
    assert np.array_equal(mosaic[1, 1], low)
    with pytest.raises(ValueError, match=r"feature maps must be \(C, h, w\)"):
        feature_mosaic(np.zeros((2, 2)))


def test_figures_render_to_png():
    png = filters_png(torch.randn(8, 3, 5, 5))
    assert png.startswith(b"\x89PNG")
    rows = [SparsityRow("a", "ReLU", 0.5, 10), SparsityRow("b", "ReLU", 0.9, 10)]
    assert figure_to_png(plot_sparsity(rows)).startswith(b"\x89PNG")
    images = np.zeros((2, 1, 6, 6), dtype=np.uint8)
    fig = plot_overlays(images, [np.ones((3, 3))] * 2, ["x", "y"], title="t")
    assert figure_to_png(fig).startswith(b"\x89PNG")
    with pytest.raises(ValueError, match="2 images, 1 maps, 2 captions"):
        plot_overlays(images, [np.ones((3, 3))], ["x", "y"], title="t")
    with pytest.raises(ValueError, match="no layers"):
        plot_sparsity([])
