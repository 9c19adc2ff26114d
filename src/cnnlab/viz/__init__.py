"""Figures for runs and comparisons (matplotlib, imported lazily, never through pyplot).

Figure builders return a ``matplotlib.figure.Figure``; ``figure_to_png`` renders one to PNG
bytes and ``png_data_uri`` embeds them in a page. Pictures that need no axes (filter mosaics,
weight templates, image grids) are plain uint8 arrays, which ``encode_png`` turns into PNG.
"""

from cnnlab.viz.confusion import plot_confusion, row_fractions, top_confusions
from cnnlab.viz.curves import plot_curves
from cnnlab.viz.examples import image_grid, plot_examples, to_rgb
from cnnlab.viz.png import encode_png, figure_to_png, png_data_uri, upscale
from cnnlab.viz.tradeoff import plot_tradeoff
from cnnlab.viz.weights import (
    filter_mosaic,
    first_conv,
    pixel_classifier,
    plot_filters,
    plot_weight_maps,
    weight_map_images,
    weight_maps,
)

__all__ = [
    "encode_png",
    "figure_to_png",
    "filter_mosaic",
    "first_conv",
    "image_grid",
    "pixel_classifier",
    "plot_confusion",
    "plot_curves",
    "plot_examples",
    "plot_filters",
    "plot_tradeoff",
    "plot_weight_maps",
    "png_data_uri",
    "row_fractions",
    "to_rgb",
    "top_confusions",
    "upscale",
    "weight_map_images",
    "weight_maps",
]
