"""Imbalanced subsets, class weights and the handbook's cost matrices (§12.2.2, eqs. 12.2-12.5)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlab.data.datasets import load_dataset
from cnnlab.data.imbalance import (
    class_weights_from_confusion,
    class_weights_from_cost_matrix,
    class_weights_from_counts,
    cost_matrix_from_confusion,
    cost_matrix_from_counts,
    imbalance_fractions,
    make_imbalanced,
    make_imbalanced_dataset,
)
from cnnlab.losses import class_weights_from

# The book's worked confusion matrix (rows = true a, b, c; columns = predicted).
BOOK_CM = [[4, 1, 3], [2, 3, 4], [3, 2, 21]]


def test_eq_12_2_and_12_3_cost_matrix_from_ratios():
    want = torch.tensor([[0, 2 / 3, 1 / 3], [3 / 2, 0, 1 / 2], [3, 2, 0]], dtype=torch.float64)
    torch.testing.assert_close(cost_matrix_from_counts([3, 2, 1]), want)
    torch.testing.assert_close(cost_matrix_from_counts([300, 200, 100]), want)
    scaled = cost_matrix_from_counts([300, 200, 100], scale_to_int=True)
    assert scaled.tolist() == [[0, 4, 2], [9, 0, 3], [18, 12, 0]]  # times LCM 6


def test_eq_12_4_cost_matrix_from_error_counts():
    assert cost_matrix_from_confusion(BOOK_CM, mode="counts").tolist() == [
        [0, 1, 3], [2, 0, 4], [3, 2, 0]]  # fmt: skip


def test_eq_12_5_rate_weighted_cost_matrix_and_the_rounding_quirk():
    # The book rounds the error rates to whole percents (50 + 67 + 19 = 136), takes each
    # class's share (36.76, 49.26, 13.97) and scales the rows of eq. 12.4 by it.
    raw = cost_matrix_from_confusion(BOOK_CM, rate_decimals=0)
    want = torch.tensor(
        [[0, 36.76, 110.29], [98.53, 0, 197.06], [41.91, 27.94, 0]], dtype=torch.float64
    )
    torch.testing.assert_close(raw, want, atol=0.006, rtol=0)
    rounded = cost_matrix_from_confusion(BOOK_CM, rate_decimals=0, rounding="nearest")
    book = torch.tensor([[0, 36, 110], [99, 0, 197], [42, 28, 0]], dtype=torch.float64)
    # Printed eq. 12.5 is round-to-nearest everywhere except (a, b): 36.76 printed as 36.
    diff = (rounded - book).nonzero().tolist()
    assert diff == [[0, 1]] and rounded[0, 1] == 37 and torch.floor(raw[0, 1]) == book[0, 1]
    # With exact rates (66.67% and 19.23%) the shares are 36.79 / 49.06 / 14.15 instead.
    exact = cost_matrix_from_confusion(BOOK_CM)
    shares = exact[:, :].sum(1) / torch.tensor([4.0, 6.0, 5.0], dtype=torch.float64)
    torch.testing.assert_close(
        shares, torch.tensor([36.79, 49.06, 14.15], dtype=torch.float64), atol=0.01, rtol=0
    )


def test_class_weights_from_counts_equal_the_losses_balanced_weights():
    counts = torch.tensor([500, 50, 5, 0])
    ours = class_weights_from_counts(counts)
    torch.testing.assert_close(ours, class_weights_from("balanced", 4, counts))
    torch.testing.assert_close(ours[:3] * counts[:3], torch.full((3,), float(ours[0] * 500)))


def test_class_weights_from_confusion_rule():
    w = class_weights_from_confusion(BOOK_CM, smoothing=0.01)
    rates = torch.tensor([4 / 8, 6 / 9, 5 / 26]) + 0.01
    torch.testing.assert_close(w, rates / rates.mean())
    assert w[1] > w[0] > w[2]  # b is misclassified most, c least
    with_empty = class_weights_from_confusion([[5, 0, 0], [1, 1, 0], [0, 0, 0]])
    assert with_empty[2] == 1.0 and with_empty[:2].mean() == pytest.approx(1.0)
    perfect = class_weights_from_confusion([[3, 0], [1, 3]])
    assert perfect[0] > 0  # smoothing keeps a class without errors in the loss


def test_class_weights_from_cost_matrix_rows():
    w = class_weights_from_cost_matrix(cost_matrix_from_counts([3, 2, 1]))
    rows = torch.tensor([1.0, 2.0, 5.0])
    torch.testing.assert_close(w, rows / rows.mean())


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: cost_matrix_from_counts([3, 0, 1]), "count > 0"),
        (lambda: cost_matrix_from_counts([1.5, 1], scale_to_int=True), "integer counts"),
        (lambda: cost_matrix_from_confusion([[1, 2, 3]]), "square confusion matrix"),
        (lambda: cost_matrix_from_confusion([[3, 0], [0, 4]]), "no errors at all"),
        (lambda: cost_matrix_from_confusion(BOOK_CM, rounding="up"), "rounding must be"),
        (lambda: class_weights_from_confusion(BOOK_CM, smoothing=0), "smoothing must be > 0"),
        (lambda: imbalance_fractions(5, "zipf", 10), "profile must be one of"),
        (lambda: imbalance_fractions(5, "long_tail", 0.5), "imbalance must be a number >= 1"),
    ],
)
def test_bad_input_fails_clearly(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_long_tail_and_step_profiles():
    lt = imbalance_fractions(5, "long_tail", 100)
    torch.testing.assert_close(
        lt, torch.tensor([1, 100**-0.25, 0.1, 100**-0.75, 0.01], dtype=torch.float64)
    )
    assert imbalance_fractions(4, "step", 10).tolist() == [1, 1, 0.1, 0.1]


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 8), st.sampled_from([1, 5, 20, 100]), st.integers(0, 1000))
def test_make_imbalanced_keeps_the_profile(k, imbalance, seed):
    labels = torch.arange(100 * k) % k
    images = torch.arange(100 * k).view(-1, 1, 1, 1)
    x, y = make_imbalanced(images, labels, imbalance=imbalance, seed=seed)
    counts = torch.bincount(y, minlength=k)
    want = torch.round(100 * imbalance_fractions(k, "long_tail", imbalance)).clamp_min(1).long()
    assert counts.tolist() == want.tolist()
    assert torch.equal(labels[x.flatten()], y)  # images and labels stay paired
    assert torch.all(x.flatten()[1:] > x.flatten()[:-1])  # original order, no repeats
    assert counts.max() / counts.min() == pytest.approx(imbalance, rel=0.05)


def test_make_imbalanced_with_ratios_and_on_a_dataset():
    labels = torch.arange(40) % 4
    _, y = make_imbalanced(torch.zeros(40, 1, 1, 1), labels, ratios=[1, 0.5, 0.2, 0.1], seed=3)
    assert torch.bincount(y).tolist() == [10, 5, 2, 1]
    ds = load_dataset("synthetic", train_size=400, test_size=40, num_classes=4)
    small = make_imbalanced_dataset(ds, profile="step", imbalance=10)
    assert small.class_counts.tolist() == [100, 100, 10, 10]
    assert torch.equal(small.test_images, ds.test_images)
    with pytest.raises(ValueError, match="ratios must be 4 numbers"):
        make_imbalanced(torch.zeros(40, 1, 1, 1), labels, ratios=[1, 0.5])
    a = make_imbalanced(ds.train_images, ds.train_labels, seed=1)[1]
    b = make_imbalanced(ds.train_images, ds.train_labels, seed=1)[1]
    assert torch.equal(a, b)
