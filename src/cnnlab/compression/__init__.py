"""Model compression (Handbook chapter 4): steps that take a trained model and return a
smaller or faster one, chained from a config, each measured and saved in its real format.

Steps (``COMPRESSION`` registry; ``cnnlab list compression``): ``lowrank`` (§4.1),
``prune_magnitude``, ``prune_channels``, ``group_lasso`` (§4.2), ``kmeans``,
``product_quantize``, ``int8`` (§4.3), ``binarize`` (§4.4), ``distill`` (§4.5) and
``finetune``. ``run_compression`` runs a config on a training run; ``load_compressed``
rebuilds any saved compressed model.
"""

from __future__ import annotations

from cnnlab.compression import (  # noqa: F401  (importing registers the steps)
    binary,
    channel_pruning,
    distillation,
    int8,
    lowrank,
    pruning,
    quantization,
)
from cnnlab.compression.compress_run import read_config, run_compression
from cnnlab.compression.context import CompressContext
from cnnlab.compression.distillation import DistillationTask, distillation_loss
from cnnlab.compression.pruning import GroupLassoTask, group_lasso_penalty
from cnnlab.compression.state import CompressionError, CompressState
from cnnlab.compression.steps import COMPRESSION, Step, build_step
from cnnlab.compression.storage import load_compressed, save_compressed

__all__ = [
    "COMPRESSION",
    "CompressContext",
    "CompressState",
    "CompressionError",
    "DistillationTask",
    "GroupLassoTask",
    "Step",
    "build_step",
    "distillation_loss",
    "group_lasso_penalty",
    "load_compressed",
    "read_config",
    "run_compression",
    "save_compressed",
]
