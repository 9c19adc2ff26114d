"""The handbook's claims as experiments with computed verdicts (Handbook Part D).

``EXPERIMENTS`` holds every experiment once :func:`load_all` has imported the chapter modules:
exact checks (D.1; ``exact_*``) and small trend studies (D.2; ``trend_*``). Run them with
:func:`run_experiments` (or ``cnnlab experiments run``) and collect the results into a book with
:func:`build_book` (``cnnlab experiments book``). Verdict rules: :mod:`.verdict`.
"""

from __future__ import annotations

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
