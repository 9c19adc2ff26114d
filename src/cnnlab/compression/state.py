"""What flows between compression steps: the model, its spec and how its tensors are stored.

A step is "model in, model out" (docs/architecture.md, "How to add ... a compression step");
the state carries what a step needs besides the module itself: the registered-model ``spec``
its structure is patched from (distillation swaps it for the student's), the storage
``encodings`` earlier steps declared for its tensors (sparse masks, codebooks, product-quantised
matrices: later fine-tuning must keep them), and, once int8 quantisation has run, the float
model it was converted from.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from cnnlab.compression.binary_layers import BINARY_LAYERS


class CompressionError(ValueError):
    """A compression step that cannot run as configured; the message names step and problem."""


@dataclass
class CompressState:
    model: nn.Module
    spec: dict[str, Any]
    encodings: dict[str, dict[str, Any]] = field(default_factory=dict)
    int8: dict[str, Any] | None = None  # {"backend": str, "float_model": nn.Module}

    def clone(self) -> CompressState:
        """A deep copy, so a step's input stays available for measurement."""
        return copy.deepcopy(self)

    @property
    def is_int8(self) -> bool:
        return self.int8 is not None

    def require_float(self, step: str) -> None:
        if self.is_int8:
            raise CompressionError(
                f"{step}: the model is already int8-quantised; int8 must be the last step"
            )

    def sync_encodings(self) -> list[str]:
        """Follow structural changes: sparse and codebook encodings stay valid on a sliced
        tensor (its values are a subset), so they take the new shape; an encoding whose
        tensor vanished, or a product-quantised matrix that changed shape, is dropped."""
        state = self.model.state_dict()
        dropped = []
        for key, enc in list(self.encodings.items()):
            shape = list(state[key].shape) if key in state else None
            if shape == enc.get("shape"):
                continue
            if shape is not None and enc["kind"] in ("sparse", "codebook"):
                enc["shape"] = shape
            else:
                del self.encodings[key]
                dropped.append(key)
        return dropped

    def finalized(self) -> nn.Module:
        """The inference form that is measured and saved: binary layers frozen, eval mode, CPU."""
        model = copy.deepcopy(self.model).cpu().eval()
        for m in model.modules():
            if isinstance(m, BINARY_LAYERS) and not m.frozen:
                m.freeze()
        return model.to(memory_format=torch.contiguous_format)


def weight_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of every Conv2d / Linear (incl. binary forms), in registration order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
