"""Turn the package's known failure types into one clear line and a non-zero exit code."""

from __future__ import annotations

import sys
from collections.abc import Callable


def _known_errors() -> tuple[type[BaseException], ...]:
    from cnnlab.config import ConfigError
    from cnnlab.data.bundle import DataError
    from cnnlab.data.datasets import DatasetNotFoundError
    from cnnlab.data.download import DownloadError
    from cnnlab.data.idx import IdxError
    from cnnlab.engine.checkpoint import CheckpointError
    from cnnlab.engine.rundir import RunDirError
    from cnnlab.engine.trainer import DivergenceError
    from cnnlab.export import ExportError
    from cnnlab.registry import RegistryError

    return (
        ConfigError,
        RegistryError,
        DatasetNotFoundError,
        DataError,
        DownloadError,
        IdxError,
        CheckpointError,
        RunDirError,
        DivergenceError,
        ExportError,
    )


class UsageError(ValueError):
    """Bad command-line arguments beyond what argparse checks."""


def run_guarded(fn: Callable[[], int | None]) -> int:
    """Run a command; known errors print ``cnnlab: error: ...`` and exit 2 (usage/config/data)
    or 1 (the run failed); anything else is a bug and keeps its traceback."""
    try:
        return fn() or 0
    except BrokenPipeError:
        # `cnnlab list | head`: the reader left; stop quietly, and keep Python's own flush at
        # exit from raising again on the closed pipe.
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("cnnlab: interrupted", file=sys.stderr)
        return 130
    except (UsageError, *_known_errors()) as err:
        from cnnlab.engine.trainer import DivergenceError

        print(f"cnnlab: error: {err}", file=sys.stderr)
        return 1 if isinstance(err, DivergenceError) else 2
