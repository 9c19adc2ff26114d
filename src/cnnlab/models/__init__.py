"""The model zoo: every family registers its builders in ``cnnlab.registry.MODELS``.

``create_model(name, num_classes=..., in_chans=...)`` builds any of them by name; importing this
package registers all families (softmax, cnn1/2, lenet5, alexnet, vgg*, resnet*).
"""

from __future__ import annotations

from typing import Any

from torch import nn

# Importing the family modules registers their builders.
from cnnlab.models import (  # noqa: F401
    alexnet,
    fastnet,
    inception,
    inception_small,
    lenet,
    linear,
    mobilenet,
    nin,
    plain,
    resnet,
    simple,
    squeezenet,
    vgg,
)
from cnnlab.models.base import ImageClassifier, check_positive_int
from cnnlab.registry import MODELS


def create_model(
    name: str,
    *,
    num_classes: int,
    in_chans: int,
    input_size: int | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build the model registered as ``name``; ``input_size=None`` uses the builder's default.

    Unknown names raise a registry error listing close matches; options the builder does not
    take raise one naming the option and listing the valid ones (before anything is built).
    """
    builder_kwargs: dict[str, Any] = {"num_classes": num_classes, "in_chans": in_chans, **kwargs}
    if input_size is not None:
        builder_kwargs["input_size"] = check_positive_int("input_size", input_size)
    return MODELS.build(name, **builder_kwargs)


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    return MODELS.names()


__all__ = ["ImageClassifier", "create_model", "list_models"]
