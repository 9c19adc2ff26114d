"""The ACTIVATIONS registry against torch's functional forms (Handbook §2.5, chapter 8)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cnnlab.nn import ACTIVATIONS, make_activation
from cnnlab.registry import RegistryError

X = torch.linspace(-6, 6, 121, dtype=torch.float64)

REFERENCE = {
    "relu": torch.relu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "leaky_relu": lambda x: torch.where(x >= 0, x, 0.01 * x),
    "elu": lambda x: torch.where(x > 0, x, torch.exp(x) - 1),
    "prelu": lambda x: torch.where(x >= 0, x, 0.25 * x),
    "lecun_tanh": lambda x: 1.7159 * torch.tanh(2 * x / 3),
    "gelu": lambda x: x * 0.5 * (1 + torch.erf(x / 2**0.5)),  # x * Phi(x)
}


def test_required_names_are_registered() -> None:
    assert set(REFERENCE) <= set(ACTIVATIONS.names())


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_matches_reference(name: str) -> None:
    act = make_activation(name).double()
    torch.testing.assert_close(act(X), REFERENCE[name](X))


def test_handbook_identities() -> None:
    # §8.2: tanh(x) = 2*sigmoid(2x) - 1; §8.3/8.4: ReLU is Leaky ReLU with slope 0.
    tanh, sigmoid = make_activation("tanh"), make_activation("sigmoid")
    torch.testing.assert_close(tanh(X), 2 * sigmoid(2 * X) - 1)
    torch.testing.assert_close(make_activation("leaky_relu", negative_slope=0.0)(X), F.relu(X))
    # LeCun's constants make f(+-1) = +-1.
    lecun = make_activation("lecun_tanh")
    assert abs(lecun(torch.tensor(1.0)).item() - 1.0) < 1e-3


def test_every_call_gives_fresh_parameters() -> None:
    a, b = make_activation("prelu"), make_activation("prelu")
    assert a.weight is not b.weight


def test_unknown_name_lists_close_matches() -> None:
    with pytest.raises(RegistryError, match="'relu'"):
        make_activation("rleu")
    with pytest.raises(RegistryError, match="must be a name"):
        make_activation(torch.nn.ReLU)  # type: ignore[arg-type]
