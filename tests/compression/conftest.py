"""Shared pieces for the compression tests: a data-free context and small models."""

from __future__ import annotations

import pytest
import torch

from cnnlab.compression.state import CompressState


class FakeContext:
    """What steps use from CompressContext, without data or training (fine-tuning is a no-op
    that records its calls)."""

    def __init__(self, input_size=(1, 12, 12), num_classes=4) -> None:
        self.input_size = input_size
        self.num_classes = num_classes
        self.finetune_calls: list[int] = []
        self.logs: list[str] = []

    def log(self, msg: str) -> None:
        self.logs.append(msg)

    def finetune(self, state: CompressState, epochs: int, **_kw) -> list:
        self.finetune_calls.append(epochs)
        return []

    def sample_batches(self, n_batches: int, batch_size: int = 16) -> list:
        gen = torch.Generator().manual_seed(1)
        return [
            (torch.randn(batch_size, *self.input_size, generator=gen),
             torch.randint(0, self.num_classes, (batch_size,), generator=gen))
            for _ in range(n_batches)
        ]  # fmt: skip


@pytest.fixture
def fake_ctx():
    return FakeContext()


def _make(name: str, size: int = 12, classes: int = 4, **params):
    """A registered model in eval mode with a fixed seed, and its spec."""
    from cnnlab.models.spec import build_model

    torch.manual_seed(0)
    spec = {"name": name, "params": params, "num_classes": classes, "in_chans": 1,
            "input_size": size}  # fmt: skip
    return build_model(spec).eval(), spec


@pytest.fixture
def make_model():
    """``make_model(name, size=12, classes=4, **params) -> (model, spec)``."""
    return _make
