"""Curves, confusion matrices, image grids and the accuracy/cost chart."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cnnlab.viz.confusion import (
    ANNOTATE_MAX,
    as_matrix,
    cell_colour,
    plot_confusion,
    row_fractions,
    top_confusions,
)
from cnnlab.viz.curves import plot_curves
from cnnlab.viz.examples import example_caption, image_grid, plot_examples, to_rgb
from cnnlab.viz.png import PNG_SIGNATURE, figure_to_png
from cnnlab.viz.tradeoff import plot_tradeoff, si_label
from cnnlab.viz.weights import GAP_COLOUR


def _history(epochs: int, val: bool = False) -> list[dict[str, float]]:
    rows = []
    for e in range(1, epochs + 1):
        row = {"epoch": e, "train_loss": 1 / e, "train_acc": 1 - 0.5 / e, "test_loss": 1.1 / e,
               "test_acc": 1 - 0.6 / e}  # fmt: skip
        if val:
            row |= {"val_loss": 1.2 / e, "val_acc": 1 - 0.7 / e}
        rows.append(row)
    return rows


def test_curves_draw_one_line_per_split_and_metric():
    fig = plot_curves(_history(5, val=True))
    loss, acc = fig.axes
    assert [line.get_label() for line in loss.lines] == ["train", "validation", "test"]
    assert acc.lines[0].get_ydata()[-1] == pytest.approx(100 * (1 - 0.5 / 5))  # in percent
    assert figure_to_png(fig).startswith(PNG_SIGNATURE)


def test_curves_with_one_epoch_and_missing_values():
    rows = _history(1)
    rows[0]["test_loss"] = math.nan
    rows[0]["test_acc"] = ""  # blank cell of a CSV
    fig = plot_curves(rows)
    loss, acc = fig.axes
    assert [line.get_label() for line in loss.lines] == ["train"]
    assert [line.get_label() for line in acc.lines] == ["train"]
    assert len(loss.lines[0].get_xdata()) == 1 and loss.lines[0].get_marker() == "o"
    assert list(loss.get_xticks()) == [1]
    assert figure_to_png(fig).startswith(PNG_SIGNATURE)
    empty = plot_curves([{"epoch": 1}])
    assert "no values" in [t.get_text() for t in empty.axes[0].texts]


def test_confusion_helpers_by_hand():
    cm = [[5, 1, 0], [2, 3, 3], [0, 0, 0]]
    frac = row_fractions(cm)
    assert frac[0].tolist() == pytest.approx([5 / 6, 1 / 6, 0])
    assert frac[2].tolist() == [0, 0, 0]  # a class absent from the test set: no division by 0
    assert top_confusions(cm, 5) == [(1, 2, 3), (1, 0, 2), (0, 1, 1)]  # largest first
    assert cell_colour(0.0) == "#ffffff"
    assert cell_colour(1.0) == "#084594"
    assert cell_colour(float("nan")) == "#ffffff"
    with pytest.raises(ValueError, match="square"):
        as_matrix([[1, 2, 3]])


def test_confusion_figure_annotates_counts_with_class_names():
    cm = np.array([[9, 1], [0, 7]])
    fig = plot_confusion(cm, ["cat", "dog"])
    ax = fig.axes[0]
    assert sorted(t.get_text() for t in ax.texts) == ["1", "7", "9"]  # zero cells left blank
    assert [t.get_text() for t in ax.get_xticklabels()] == ["cat", "dog"]
    assert ax.get_ylabel() == "true class"
    assert figure_to_png(fig).startswith(PNG_SIGNATURE)
    with pytest.raises(ValueError, match="3 class names"):
        plot_confusion(cm, ["a", "b", "c"])


def test_confusion_figure_with_many_classes_skips_numbers_and_thins_labels():
    n = 100
    cm = np.random.default_rng(0).integers(0, 5, (n, n)) + np.eye(n, dtype=int) * 40
    fig = plot_confusion(cm, [f"class_{i}" for i in range(n)])
    ax = fig.axes[0]
    assert n > ANNOTATE_MAX and not ax.texts
    assert 1 < len(ax.get_xticklabels()) <= 25
    assert figure_to_png(fig, dpi=60).startswith(PNG_SIGNATURE)


def test_image_grid_and_rgb_conversion():
    grey = np.arange(2 * 1 * 2 * 2, dtype=np.uint8).reshape(2, 1, 2, 2)
    rgb = to_rgb(grey)
    assert rgb.shape == (2, 2, 2, 3) and (rgb[..., 0] == rgb[..., 2]).all()
    colour = np.zeros((1, 3, 2, 2), dtype=np.uint8)
    colour[0, 1] = 200  # green channel
    assert to_rgb(colour)[0, 0, 0].tolist() == [0, 200, 0]
    grid = image_grid(grey, ncols=2, pad=1)
    assert grid.shape == (1 + 2 + 1, 1 + 2 * 3, 3)
    assert np.array_equal(grid[1:3, 4:6, 0], grey[1, 0])  # second image, second column
    assert (grid[0] == GAP_COLOUR).all()
    with pytest.raises(ValueError, match="uint8"):
        to_rgb(grey.astype(np.float32))


def test_examples_figure_colours_right_and_wrong():
    images = np.random.default_rng(1).integers(0, 255, (3, 1, 8, 8), dtype=np.uint8)
    fig = plot_examples(images, [0, 1, 2], [0, 2, 2], [0.9, 0.6, float("nan")], ["a", "b", "c"],
                        ncols=2)  # fmt: skip
    titled = [ax for ax in fig.axes if ax.images]
    assert len(titled) == 3 and len(fig.axes) == 4  # 2 x 2 grid, one empty panel
    assert titled[0].get_title() == "a 90%"
    assert titled[1].get_title() == "b\n→ c 60%"
    assert titled[1].title.get_color() == "#c62828"
    assert figure_to_png(fig).startswith(PNG_SIGNATURE)
    assert example_caption("c", "c", float("nan")) == "c ?"
    with pytest.raises(ValueError, match="2 targets"):
        plot_examples(images, [0, 1], [0, 1, 2], [1, 1, 1], ["a", "b", "c"])


def test_tradeoff_chart_skips_rows_without_values():
    rows = [
        {"model": "softmax", "test_acc": 0.84, "params": 7850, "train_seconds": 20.0},
        {"model": "cnn1", "test_acc": 0.91, "test_acc_std": 0.004, "params": 50000,
         "train_seconds": 60.0},
        {"model": "broken", "test_acc": None, "params": 0, "train_seconds": float("nan")},
    ]  # fmt: skip
    fig = plot_tradeoff(rows)
    params_ax, time_ax = fig.axes[:2]
    assert sorted(t.get_text() for t in params_ax.texts) == ["cnn1", "softmax"]
    assert len(time_ax.texts) == 2
    assert params_ax.get_xscale() == "log"
    assert figure_to_png(fig).startswith(PNG_SIGNATURE)
    single = plot_tradeoff([{"model": "only", "test_acc": float("nan")}])
    assert "no values" in [t.get_text() for t in single.axes[0].texts]
    assert [si_label(x) for x in (20000, 2e6, 0.5, 3)] == ["20k", "2M", "0.5", "3"]
