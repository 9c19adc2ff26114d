"""The handbook's claims as experiments with computed verdicts (Handbook Part D).

``EXPERIMENTS`` holds every experiment: this package imports the chapter modules, which register
theirs, exact checks (D.1; ``exact_*``) and small trend studies (D.2; ``trend_*``). Run them with
:func:`run_experiments` (or ``cnnlab experiments run``) and collect the results into a book with
:func:`build_book` (``cnnlab experiments book``). Verdict rules: :mod:`.verdict`.
"""

from __future__ import annotations

# The chapter modules register their experiments when imported (explicitly, here: the package
# that owns the registry fills it).
from cnnlab.experiments import (  # noqa: F401  (registration)
    exact_basics,
    exact_practice,
    exact_training,
    trend_architectures,
    trend_basics,
    trend_compression,
    trend_distillation,
    trend_ensembles,
    trend_init_losses,
    trend_regularization,
    trend_training,
)
from cnnlab.experiments.base import (
    EXPERIMENTS,
    Check,
    Context,
    ExactExperiment,
    Experiment,
    Measured,
    Metric,
    TrendExperiment,
    load_all,
    ordered,
)
from cnnlab.experiments.book import build_book
from cnnlab.experiments.execute import (
    ExperimentError,
    find_results,
    run_experiment,
    run_experiments,
    select,
)

__all__ = [
    "EXPERIMENTS",
    "Check",
    "Context",
    "ExactExperiment",
    "Experiment",
    "ExperimentError",
    "Measured",
    "Metric",
    "TrendExperiment",
    "build_book",
    "find_results",
    "load_all",
    "ordered",
    "run_experiment",
    "run_experiments",
    "select",
]
