"""Resume points for in-memory training (``pipeline.train_model``): after every epoch the
model, optimiser, scheduler, task and RNG state go to one checkpoint file; a later call with
the same file and the same fingerprint continues from the last finished epoch instead of
starting over (a distillation student trains for hours on a laptop CPU).

The fingerprint names what is being trained (e.g. the compression config up to this step and
which training call of the step this is); a file saved under another fingerprint is refused
with both shown, never silently continued. A finished training's file is a resume point too:
calling again loads its final weights and history without training.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.engine.callbacks import Checkpointer
from cnnlab.engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from cnnlab.engine.state import TrainState


def _canonical(value: Mapping[str, Any]) -> Any:
    """The fingerprint as JSON stores it (tuples become lists), for comparison."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


@dataclass(frozen=True)
class ResumePoint:
    """Where a training saves itself each epoch, and what it must match to be continued."""

    path: Path
    fingerprint: Mapping[str, Any]

    def restore(
        self, model: nn.Module, task: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any
    ) -> TrainState | None:
        """Load the saved training into the given objects; None if nothing was saved yet."""
        if not Path(self.path).is_file():
            return None
        ckpt = load_checkpoint(self.path)
        saved, wanted = ckpt.meta.get("fingerprint"), _canonical(self.fingerprint)
        if saved != wanted:
            raise CheckpointError(
                f"{self.path}: saved by a different training (saved: {json.dumps(saved)}; this "
                f"one: {json.dumps(wanted)}); delete the file to start this training over"
            )
        return ckpt.restore_training(model, task, optimizer, scheduler)

    def saver(
        self, model: nn.Module, task: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any
    ) -> Checkpointer:
        """The callback that writes the resume file (atomically) after every epoch."""
        meta = {"fingerprint": _canonical(self.fingerprint)}

        def save(state: TrainState) -> None:
            save_checkpoint(self.path, model=model, optimizer=optimizer, scheduler=scheduler,
                            meta={**meta, "state": state.to_dict()},
                            modules={"task": task})  # fmt: skip

        return Checkpointer(save)
