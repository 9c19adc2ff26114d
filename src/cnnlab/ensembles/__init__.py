"""Model ensembles (handbook ch. 13): combination rules, ``Ensemble`` (an ``nn.Module``),
test-time augmentation, easy ensembles, snapshot ensembles, stacking and feature fusion.

Data level: ``TTA`` (§13.1.1), ``train_easy_ensemble`` (§13.1.2). Model level: ``FeatureFusion``
and ``SnapshotSaver`` / ``Ensemble.from_snapshots`` (§13.2.1); ``Ensemble`` with averaging,
weighted averaging, plurality and majority voting, and ``Stacker`` (§13.2.2). ``cnnlab
ensemble`` (``cnnlab.ensembles.workflow``) trains and combines members from one YAML file.
"""

from __future__ import annotations

from cnnlab.ensembles.combine import (
    ABSTAIN,
    RULES,
    EnsembleError,
    RuleScore,
    average,
    combine,
    majority,
    plurality,
    predict,
    score,
    vote_counts,
)
from cnnlab.ensembles.easy import balanced_subset, easy_subsets, train_easy_ensemble
from cnnlab.ensembles.ensemble import Ensemble, Votes
from cnnlab.ensembles.fusion import FeatureFusion, pool_and_normalize
from cnnlab.ensembles.snapshots import (
    SnapshotSaver,
    list_snapshots,
    snapshot_callbacks,
    snapshot_steps,
)
from cnnlab.ensembles.stacking import Stacker, fold_assignment
from cnnlab.ensembles.weights import fit_weights, member_accuracies, weights_from_accuracy
from cnnlab.evaluation.tta import TTA, preset_views

__all__ = [
    "ABSTAIN",
    "RULES",
    "TTA",
    "Ensemble",
    "EnsembleError",
    "FeatureFusion",
    "RuleScore",
    "SnapshotSaver",
    "Stacker",
    "Votes",
    "average",
    "balanced_subset",
    "combine",
    "easy_subsets",
    "fit_weights",
    "fold_assignment",
    "list_snapshots",
    "majority",
    "member_accuracies",
    "plurality",
    "pool_and_normalize",
    "predict",
    "preset_views",
    "score",
    "snapshot_callbacks",
    "snapshot_steps",
    "train_easy_ensemble",
    "vote_counts",
    "weights_from_accuracy",
]
