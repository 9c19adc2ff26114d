"""cnnlab: convolutional networks for image classification, built from a practical handbook.

The public API is imported lazily so that ``import cnnlab`` stays fast and cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "create_model": "cnnlab.models",
    "list_models": "cnnlab.models",
    "summary": "cnnlab.inspect.summary",
    "load": "cnnlab.trained.run",
    "TrainedRun": "cnnlab.trained.run",
    "load_dataset": "cnnlab.data.datasets",
    "load_config": "cnnlab.config",
    "run_training": "cnnlab.training.spine",
    "evaluate_run": "cnnlab.trained.evaluation",
    "evaluate": "cnnlab.evaluation.evaluate",
    "Ensemble": "cnnlab.ensembles",
    "TTA": "cnnlab.ensembles",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'cnnlab' has no attribute {name!r}")
