"""The list of sub-commands; each module adds its parser(s) with a ``register`` function."""

from __future__ import annotations

import cnnlab.cli.inspect_net_cmd as inspect_net_cmd
from cnnlab.cli import augment_cmd, compare_cmd, data_cmd, inspect_cmd, report_cmd, train_cmd

REGISTRATIONS = [
    train_cmd.register_train,
    train_cmd.register_eval,
    inspect_cmd.register_summary,
    inspect_cmd.register_list,
    data_cmd.register,
    report_cmd.register,
    compare_cmd.register,
    augment_cmd.register,
    inspect_net_cmd.register,
]
