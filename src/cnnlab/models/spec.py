"""A model spec: the plain dict that rebuilds a trained network (stored in every checkpoint).

``{"name", "params", "num_classes", "in_chans", "input_size"}``: the registered name, the
builder options of the config's ``model.params``, and what the data set fixes. JSON-safe, so it
travels in safetensors headers, ONNX metadata and reports.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from cnnlab.models import create_model

SPEC_KEYS = ("name", "params", "num_classes", "in_chans", "input_size")


def model_spec(
    name: str, params: Mapping[str, Any], *, num_classes: int, in_chans: int, input_size: int
) -> dict[str, Any]:
    """Everything needed to rebuild the model later."""
    return {
        "name": name,
        "params": dict(params),
        "num_classes": int(num_classes),
        "in_chans": int(in_chans),
        "input_size": int(input_size),
    }


def build_model(spec: Mapping[str, Any]) -> nn.Module:
    """The (freshly initialised) network a spec describes; a spec missing a key says which."""
    missing = [k for k in SPEC_KEYS if k not in spec]
    if missing:
        raise ValueError(f"model spec: missing {', '.join(missing)} (found {sorted(spec)})")
    return create_model(
        spec["name"],
        num_classes=spec["num_classes"],
        in_chans=spec["in_chans"],
        input_size=spec["input_size"],
        **spec["params"],
    )
