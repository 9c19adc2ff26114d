"""Metrics against hand-computed confusion matrices."""

from __future__ import annotations

import pytest
import torch

from cnnlab.evaluation.metrics import (
    accuracy,
    balanced_accuracy,
    confusion_matrix,
    per_class_report,
)


def test_confusion_and_per_class():
    targets = torch.tensor([0, 0, 0, 1, 1, 2])
    preds = torch.tensor([0, 1, 0, 1, 1, 1])
    cm = confusion_matrix(preds, targets, 3)
    assert cm.tolist() == [[2, 1, 0], [0, 2, 0], [0, 1, 0]]
    rep = per_class_report(cm)
    assert rep["precision"] == pytest.approx([1.0, 0.5, 0.0])
    assert rep["recall"] == pytest.approx([2 / 3, 1.0, 0.0])
    assert rep["f1"] == pytest.approx([0.8, 2 / 3, 0.0])
    assert balanced_accuracy(cm) == pytest.approx((2 / 3 + 1 + 0) / 3)


def test_accuracy_and_the_99_to_1_trap():
    # Handbook §12 (D.1): an all-positive classifier scores 99% on a 99:1 set, 1% reversed.
    logits = torch.tensor([[0.0, 1.0]]).repeat(100, 1)
    skewed = torch.tensor([1] * 99 + [0])
    assert accuracy(logits, skewed) == pytest.approx(0.99)
    assert accuracy(logits, 1 - skewed) == pytest.approx(0.01)
    cm = confusion_matrix(logits.argmax(1), skewed, 2)
    assert balanced_accuracy(cm) == pytest.approx(0.5)
