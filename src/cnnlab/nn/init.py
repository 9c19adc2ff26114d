"""Parameter initialisers by name (Handbook chapter 7): ``INITS``, ``apply_init``, LSUV.

Builder contract: ``builder(**options) -> InitFn`` where ``InitFn(tensor)`` fills the tensor in
place (and returns it). Fans follow torch: ``fan_in = C_in/groups * k_h * k_w`` for a conv,
``in_features`` for a linear layer (Handbook E.3 item 33). Everything uses torch.nn.init.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from cnnlab.registry import Registry

INITS = Registry("initializer")
InitFn = Callable[[torch.Tensor], torch.Tensor]

FAN_MODES = ("fan_in", "fan_out")
XAVIER_MODES = ("avg", "fan_in", "fan_out")
SYMMETRY_WARNING = (
    "{name} initialisation of a weight tensor: every unit of the layer computes the same output "
    "and receives the same gradient, so the units stay identical and the network cannot break "
    "the symmetry or learn distinct features (Handbook §7.1). Use a random initialiser."
)


def _choice(name: str, option: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}: {option} must be one of {', '.join(choices)}; got {value!r}")


def _positive(name: str, option: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name}: {option} must be > 0, got {value!r}")


def _warn_symmetric(name: str, tensor: torch.Tensor) -> None:
    if tensor.dim() >= 2:  # a weight matrix/kernel; a constant bias vector is harmless
        warnings.warn(SYMMETRY_WARNING.format(name=name), UserWarning, stacklevel=3)


@INITS.register("zeros")
def zeros() -> InitFn:
    """All zeros; for biases. On weights it warns: units stay identical, no learning (§7.1)."""

    def init(t: torch.Tensor) -> torch.Tensor:
        _warn_symmetric("zeros", t)
        return nn.init.zeros_(t)

    return init


@INITS.register("constant")
def constant(*, value: float = 0.0) -> InitFn:
    """Every entry = value (default 0); on weights it warns like zeros (symmetry, §7.1)."""

    def init(t: torch.Tensor) -> torch.Tensor:
        _warn_symmetric("constant", t)
        return nn.init.constant_(t, value)

    return init


@INITS.register("normal")
def normal(*, std: float = 0.001, mean: float = 0.0) -> InitFn:
    """Small Gaussian N(mean, std^2), std 0.001 as in the handbook's 0.001*randn (§7.2)."""
    _positive("normal", "std", std)
    return lambda t: nn.init.normal_(t, mean=mean, std=std)


def _lecun_style(t: torch.Tensor, mode: str, gain: float, uniform: bool) -> torch.Tensor:
    """Variance gain^2 / fan(mode): torch's kaiming init with the linear gain 1, then scaled."""
    fill = nn.init.kaiming_uniform_ if uniform else nn.init.kaiming_normal_
    with torch.no_grad():
        return fill(t, mode=mode, nonlinearity="linear").mul_(gain)


@INITS.register("xavier_normal")
def xavier_normal(*, gain: float = 1.0, mode: str = "avg") -> InitFn:
    """Xavier/Glorot normal, std = gain*sqrt(2/(fan_in+fan_out)) (mode "avg"; §7.2).

    mode "fan_in" uses std = gain/sqrt(fan_in), the handbook's code (``randn / sqrt(n_in)``,
    without its stray 0.001 factor, Handbook E.3 item 31); "fan_out" uses fan_out.
    """
    _choice("xavier_normal", "mode", mode, XAVIER_MODES)
    if mode == "avg":
        return lambda t: nn.init.xavier_normal_(t, gain=gain)
    return lambda t: _lecun_style(t, mode, gain, uniform=False)


@INITS.register("xavier_uniform")
def xavier_uniform(*, gain: float = 1.0, mode: str = "avg") -> InitFn:
    """Xavier/Glorot uniform, U(+-gain*sqrt(6/(fan_in+fan_out))) (mode "avg"; §7.2).

    The bound is sqrt(3/n) with n = (fan_in+fan_out)/2 ("avg"), fan_in or fan_out: variance 1/n
    (Handbook E.3 item 32).
    """
    _choice("xavier_uniform", "mode", mode, XAVIER_MODES)
    if mode == "avg":
        return lambda t: nn.init.xavier_uniform_(t, gain=gain)
    return lambda t: _lecun_style(t, mode, gain, uniform=True)


def _check_kaiming(name: str, mode: str, nonlinearity: str) -> None:
    _choice(name, "mode", mode, FAN_MODES)
    _choice(name, "nonlinearity", nonlinearity, ("relu", "leaky_relu", "linear", "tanh"))


@INITS.register("kaiming_normal")
def kaiming_normal(*, mode: str = "fan_in", nonlinearity: str = "relu", a: float = 0.0) -> InitFn:
    """He normal, std = sqrt(2/fan_in) for ReLU (mode fan_in; He et al. 2015, §7.2)."""
    _check_kaiming("kaiming_normal", mode, nonlinearity)
    return lambda t: nn.init.kaiming_normal_(t, a=a, mode=mode, nonlinearity=nonlinearity)


@INITS.register("kaiming_uniform")
def kaiming_uniform(*, mode: str = "fan_in", nonlinearity: str = "relu", a: float = 0.0) -> InitFn:
    """He uniform, U(+-sqrt(6/fan_in)) for ReLU (mode fan_in; He et al. 2015, §7.2)."""
    _check_kaiming("kaiming_uniform", mode, nonlinearity)
    return lambda t: nn.init.kaiming_uniform_(t, a=a, mode=mode, nonlinearity=nonlinearity)


@INITS.register("lecun_normal")
def lecun_normal() -> InitFn:
    """LeCun normal, std = 1/sqrt(fan_in) (LeCun et al. 1998; = xavier_normal mode fan_in)."""
    return lambda t: _lecun_style(t, "fan_in", 1.0, uniform=False)


@INITS.register("lecun_uniform")
def lecun_uniform() -> InitFn:
    """LeCun uniform, U(+-sqrt(3/fan_in)), variance 1/fan_in (LeCun et al. 1998)."""
    return lambda t: _lecun_style(t, "fan_in", 1.0, uniform=True)


@INITS.register("orthogonal")
def orthogonal(*, gain: float = 1.0) -> InitFn:
    """(Semi-)orthogonal rows/columns times gain (Saxe et al. 2014); LSUV's starting point."""
    return lambda t: nn.init.orthogonal_(t, gain=gain)


def make_init(spec: str | Mapping[str, Any]) -> InitFn:
    """An initialiser from a name (``"normal"``) or a mapping ``{"name": "normal", **options}``."""
    if isinstance(spec, str):
        return INITS.build(spec)
    if isinstance(spec, Mapping) and isinstance(spec.get("name"), str):
        options = {k: v for k, v in spec.items() if k != "name"}
        return INITS.build(spec["name"], **options)
    raise ValueError(f"initialiser: expected a name or a mapping with 'name', got {spec!r}")


CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d)
NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)
DEFAULT_SCHEME: dict[str, str] = {
    "conv": "kaiming_normal",
    "linear": "xavier_uniform",
    "bias": "zeros",
    "norm": "default",
}


def resolve_scheme(scheme: str | Mapping[str, Any]) -> dict[str, Any]:
    """Fill a scheme's missing layer types with the defaults; a string sets conv and linear.

    The string ``"default"`` leaves everything as built (biases and norms included).
    """
    if scheme == "default":
        return dict.fromkeys(DEFAULT_SCHEME, "default")
    if isinstance(scheme, str):
        scheme = {"conv": scheme, "linear": scheme}
    if not isinstance(scheme, Mapping):
        raise ValueError(f"init scheme: expected a name or a mapping, got {scheme!r}")
    unknown = sorted(set(scheme) - set(DEFAULT_SCHEME))
    if unknown:
        raise ValueError(
            f"init scheme: unknown layer type(s) {', '.join(map(repr, unknown))}; "
            f"valid: {', '.join(DEFAULT_SCHEME)}"
        )
    full = {**DEFAULT_SCHEME, **scheme}
    for spec in full.values():
        if spec != "default":
            make_init(spec)  # fail now, before touching any parameter
    return full


@torch.no_grad()
def apply_init(model: nn.Module, scheme: str | Mapping[str, Any]) -> dict[str, int]:
    """Re-initialise ``model``'s conv/linear weights, their biases and norm layers by layer type.

    ``scheme`` maps ``conv``, ``linear``, ``bias`` (conv and linear biases) and ``norm`` (the
    scale gamma of BatchNorm/GroupNorm/LayerNorm; their shift beta is set to 0) to an
    initialiser name, a ``{"name": ..., **options}`` mapping, or ``"default"`` (leave as built).
    Missing keys take ``DEFAULT_SCHEME`` (conv kaiming_normal, linear xavier_uniform, bias
    zeros, norm default); a single string means that initialiser for conv and linear weights
    (``"default"`` alone changes nothing).
    Other modules (PReLU, custom layers) are left as built. Returns how many tensors of each
    type were initialised.
    """
    full = resolve_scheme(scheme)
    fns = {k: (None if v == "default" else make_init(v)) for k, v in full.items()}
    counts = dict.fromkeys(full, 0)
    for module in model.modules():
        kind = _layer_kind(module)
        weight, bias = getattr(module, "weight", None), getattr(module, "bias", None)
        if kind is None or not isinstance(weight, torch.Tensor):
            continue
        init_weight = fns[kind]
        # Norm layers: gamma from the scheme, beta always 0; conv/linear biases from "bias".
        init_bias = (nn.init.zeros_ if init_weight else None) if kind == "norm" else fns["bias"]
        if init_weight is not None:
            init_weight(weight)
            counts[kind] += 1
        if isinstance(bias, torch.Tensor) and init_bias is not None:
            init_bias(bias)
            counts["bias"] += kind != "norm"
    return counts


def _layer_kind(module: nn.Module) -> str | None:
    if isinstance(module, CONV_TYPES):
        return "conv"
    if isinstance(module, nn.Linear):
        return "linear"
    return "norm" if isinstance(module, NORM_TYPES) else None


class _StopForward(Exception):
    """Raised by a hook to end a forward pass once the wanted layer output is captured."""


def _forward_order(model: nn.Module, x: torch.Tensor, layers: dict[nn.Module, str]) -> list:
    """The conv/linear layers in the order a forward pass on ``x`` first calls them."""
    order: list[tuple[str, nn.Module]] = []

    def hook(module: nn.Module, _inp: Any, _out: Any) -> None:
        if all(m is not module for _, m in order):
            order.append((layers[module], module))

    handles = [m.register_forward_hook(hook) for m in layers]
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    return order


def _output_variance(model: nn.Module, x: torch.Tensor, layer: nn.Module) -> float:
    """Variance of ``layer``'s output over the batch (the forward stops right after it)."""
    captured: list[torch.Tensor] = []

    def hook(_m: nn.Module, _inp: Any, out: torch.Tensor) -> None:
        captured.append(out)
        raise _StopForward

    handle = layer.register_forward_hook(hook)
    try:
        model(x)
    except _StopForward:
        pass
    finally:
        handle.remove()
    return captured[0].float().var().item()


@torch.no_grad()
def lsuv_init(
    model: nn.Module, batch: torch.Tensor | tuple, *, tol: float = 0.05, max_iter: int = 10
) -> dict[str, float]:
    """LSUV init: orthogonal weights, then each layer scaled to output variance 1 (tol 0.05).

    Layer-sequential unit-variance init (Mishkin & Matas 2016, ICLR); a data-dependent init in
    the sense of Handbook §7.3. Every conv/linear weight is first set orthogonal and its bias to
    0; then, in forward order, each layer's weight is divided by sqrt(Var(output)) measured on
    ``batch`` (images, or an (images, labels) pair) until |Var - 1| < ``tol`` or ``max_iter``
    rescalings. The passes run in eval mode (no dropout; BatchNorm uses its running statistics,
    which are left untouched) and the model's mode is restored. Returns ``{layer name: final
    output variance}`` in forward order.
    """
    if not tol > 0:
        raise ValueError(f"lsuv_init: tol must be > 0, got {tol!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"lsuv_init: max_iter must be an integer >= 1, got {max_iter!r}")
    x = batch[0] if isinstance(batch, (tuple, list)) else batch
    layers = {
        m: name for name, m in model.named_modules() if isinstance(m, (*CONV_TYPES, nn.Linear))
    }
    if not layers:
        raise ValueError("lsuv_init: the model has no conv or linear layer to initialise")
    was_training = model.training
    model.eval()
    try:
        for m in layers:
            # orthogonal_ views the weight as a matrix, which a channels_last conv weight
            # cannot be; fill a contiguous copy and copy it back in the weight's own layout.
            w = torch.empty(m.weight.shape, dtype=m.weight.dtype, device=m.weight.device)
            m.weight.copy_(nn.init.orthogonal_(w))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        result: dict[str, float] = {}
        for name, layer in _forward_order(model, x, layers):
            var = _output_variance(model, x, layer)
            for _ in range(max_iter):
                if var <= 1e-12 or abs(var - 1.0) < tol:
                    break  # a dead layer (variance 0) cannot be rescaled to 1
                layer.weight.div_(var**0.5)
                var = _output_variance(model, x, layer)
            result[name] = var
    finally:
        model.train(was_training)
    return result
