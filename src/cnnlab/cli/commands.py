"""The list of sub-commands; each module adds its parser(s) with a ``register`` function."""

from __future__ import annotations

from cnnlab.cli import (
    augment_cmd,
    compare_cmd,
    compress_cmd,
    data_cmd,
    ensemble_cmd,
    experiments_cmd,
    export_cmd,
    inspect_cmd,
    inspect_net_cmd,
    lrfind_cmd,
    predict_cmd,
    report_cmd,
    train_cmd,
)

REGISTRATIONS = [
    train_cmd.register_train,
    train_cmd.register_eval,
    predict_cmd.register,
    compare_cmd.register,
    compress_cmd.register,
    ensemble_cmd.register,
    report_cmd.register,
    inspect_cmd.register_summary,
    inspect_net_cmd.register,
    inspect_cmd.register_list,
    lrfind_cmd.register,
    augment_cmd.register,
    data_cmd.register,
    export_cmd.register,
    experiments_cmd.register,
]
