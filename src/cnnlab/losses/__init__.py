"""Losses (handbook chapter 9), registered by name in ``LOSSES``.

Loss builder contract: ``builder(*, num_classes, class_counts=None, **options)`` returning either
an ``nn.Module`` whose forward takes ``(logits (B, C), targets (B,))`` and returns a scalar, or,
for losses that need the deep features or the classifier weight (``l_softmax``, ``center``), a
``cnnlab.losses.task.Task`` that computes a whole training step. Use
``cnnlab.engine.tasks.build_task(name, ...)`` to get a Task for any name.

Modules: ``classification`` (cross_entropy, multiclass_hinge, ramp, kl_label_distribution),
``regression`` (l1, l2, tukey on softmax probabilities), ``margin`` (the L-Softmax and center loss
formulas) and ``margin_tasks`` (l_softmax, center, as tasks).
"""

from cnnlab.losses.classification import (
    CrossEntropy,
    LabelDistributionKL,
    MulticlassHinge,
    RampLoss,
    class_weights_from,
    cross_entropy,
    gaussian_label_distribution,
    kl_label_distribution,
    multiclass_hinge,
    ramp,
    smoothed_label_distribution,
)
from cnnlab.losses.margin import (
    center_update_delta,
    chebyshev_cos_multiple,
    large_margin_logits,
    large_margin_psi,
)
from cnnlab.losses.margin_tasks import center, l_softmax
from cnnlab.losses.regression import (
    ProbabilityL1,
    ProbabilityL2,
    TukeyBiweight,
    l1,
    l2,
    tukey,
    tukey_biweight,
)
from cnnlab.registry import LOSSES

__all__ = [
    "LOSSES",
    "CrossEntropy",
    "LabelDistributionKL",
    "MulticlassHinge",
    "ProbabilityL1",
    "ProbabilityL2",
    "RampLoss",
    "TukeyBiweight",
    "center",
    "center_update_delta",
    "chebyshev_cos_multiple",
    "class_weights_from",
    "cross_entropy",
    "gaussian_label_distribution",
    "kl_label_distribution",
    "l1",
    "l2",
    "l_softmax",
    "large_margin_logits",
    "large_margin_psi",
    "multiclass_hinge",
    "ramp",
    "smoothed_label_distribution",
    "tukey",
    "tukey_biweight",
]
