"""``evaluate`` keeps its sums on the batches' device and reads them once (issue 23): the
results equal a direct computation over all outputs."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnlab.evaluation.evaluate import evaluate
from cnnlab.evaluation.metrics import confusion_matrix


def test_evaluate_equals_one_pass_over_all_outputs():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 5))
    xs = [torch.randn(n, 3, 2, 2) for n in (7, 7, 3)]  # uneven last batch
    ys = [torch.randint(0, 5, (x.shape[0],)) for x in xs]
    res = evaluate(model, zip(xs, ys, strict=True), num_classes=5, keep_outputs=True)
    x, y = torch.cat(xs), torch.cat(ys)
    with torch.no_grad():
        logits = model(x)
    assert res.num_samples == 17
    assert res.loss == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-6)
    assert res.accuracy == int((logits.argmax(1) == y).sum()) / 17
    assert torch.equal(res.confusion, confusion_matrix(logits.argmax(1), y, 5))
    assert res.confusion.device.type == "cpu" and res.confusion.dtype == torch.int64
    assert torch.allclose(res.probs, logits.softmax(1)) and torch.equal(res.targets, y)
    assert res.seconds > 0


def test_evaluate_without_batches_says_so():
    with pytest.raises(ValueError, match="no samples"):
        evaluate(nn.Linear(2, 2), [], num_classes=2)
