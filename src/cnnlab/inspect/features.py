"""Feature maps, top-k activating images, activation sparsity and the distributed view.

Handbook §3.1.2 (distributed representation: each concept is a pattern over many channels and
each channel takes part in many concepts; responses are sparse) and §3.1.3 (feature hierarchy:
Zeiler & Fergus show, for a channel, the top-9 images that activate it most).

Images go in as float batches already normalised as the model expects, or as uint8 data-set
tensors together with a ``transform`` (e.g. ``cnnlab.data.loader.Normalizer``) applied batch by
batch. Everything runs in eval mode under ``torch.no_grad()``; hooks are removed afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from cnnlab.inspect.layers import capture, eval_mode, get_layer, model_device, run_until
from cnnlab.nn.activations import ACTIVATIONS, make_activation

Transform = Callable[[torch.Tensor], torch.Tensor]


def batches(
    images: torch.Tensor, batch_size: int, transform: Transform | None, device: torch.device
) -> Iterator[tuple[int, torch.Tensor]]:
    """``(start, batch)`` pairs: slices moved to ``device`` and transformed (uint8 -> float)."""
    if images.dim() != 4:
        raise ValueError(f"images must be a (N, C, H, W) batch, got shape {tuple(images.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].to(device)
        if transform is not None:
            x = transform(x)
        elif not x.is_floating_point():
            raise ValueError(f"images are {x.dtype}: pass a transform (e.g. the run's Normalizer)")
        yield start, x


def layer_output(
    model: nn.Module, layer: str, images: torch.Tensor, *, transform: Transform | None = None
) -> torch.Tensor:
    """The output of ``layer`` for a batch of images (detached; the rest of the net is skipped)."""
    get_layer(model, layer)
    (_, x), *_ = batches(images, len(images), transform, model_device(model))
    with eval_mode(model), torch.no_grad(), capture(model, [layer], stop=True) as out:
        run_until(model, x)
    return out[layer].detach()


def feature_maps(
    model: nn.Module, layer: str, images: torch.Tensor, *, transform: Transform | None = None
) -> torch.Tensor:
    """``(B, C, h, w)`` maps of ``layer`` for ``images`` (Handbook §3.1.3); a clear error if the
    layer's output is not a spatial map."""
    maps = layer_output(model, layer, images, transform=transform)
    if maps.dim() != 4:
        raise ValueError(
            f"layer {layer!r} outputs shape {tuple(maps.shape)}, not (B, C, h, w) feature maps"
        )
    return maps


@dataclass
class TopK:
    """The images that activate one channel most: indices into the data, peak values, and the
    (row, col) of each peak in the layer's map (0, 0 for a vector output)."""

    layer: str
    channel: int
    indices: torch.Tensor  # (k,) int64, strongest first
    values: torch.Tensor  # (k,)
    positions: torch.Tensor  # (k, 2) int64


def _channel_peaks(out: torch.Tensor, channel: int, layer: str) -> tuple[torch.Tensor, ...]:
    """Per-image maximum of ``channel`` and its flat position ((B,), (B,))."""
    if out.dim() < 2 or not 0 <= channel < out.shape[1]:
        raise ValueError(
            f"channel {channel} out of range for layer {layer!r} with output {tuple(out.shape)}"
        )
    chan = out[:, channel].reshape(len(out), -1)  # (B, h, w) -> (B, h*w); (B,) -> (B, 1)
    return chan.max(dim=1)


def top_k_activations(
    model: nn.Module,
    layer: str,
    channel: int,
    images: torch.Tensor,
    *,
    k: int = 9,
    batch_size: int = 256,
    transform: Transform | None = None,
) -> TopK:
    """The ``k`` images whose strongest response in ``channel`` of ``layer`` is largest.

    Handbook §3.1.3 (Zeiler & Fergus: top-9). Scores are the per-image maximum over positions,
    computed batch by batch with a running top-k, so the data set never has to fit at once.
    """
    get_layer(model, layer)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    device = model_device(model)
    best_v = torch.empty(0, device=device)
    best_i = torch.empty(0, dtype=torch.long, device=device)
    best_p = torch.empty(0, dtype=torch.long, device=device)
    width = 1
    with eval_mode(model), torch.no_grad():
        for start, x in batches(images, batch_size, transform, device):
            with capture(model, [layer], stop=True) as out:
                run_until(model, x)
            fmap = out[layer]
            width = fmap.shape[-1] if fmap.dim() == 4 else 1
            values, pos = _channel_peaks(fmap, channel, layer)
            idx = torch.arange(start, start + len(x), device=device)
            best_v, order = torch.cat([best_v, values.float()]).topk(min(k, len(best_v) + len(x)))
            best_i = torch.cat([best_i, idx])[order]
            best_p = torch.cat([best_p, pos])[order]
    positions = torch.stack([best_p // width, best_p % width], dim=1)
    return TopK(layer, channel, best_i.cpu(), best_v.cpu(), positions.cpu())


@dataclass
class SparsityRow:
    """Fraction of (near-)zero activations of one layer over the images seen."""

    name: str
    type: str
    fraction: float  # share of entries with |a| <= eps
    numel: int  # entries counted (all images, all calls of the layer)

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "type": self.type,
            "fraction": self.fraction,
            "numel": self.numel,
        }


def activation_types() -> tuple[type[nn.Module], ...]:
    """Module classes that are activation functions: every registered activation plus torch's."""
    registered = {type(make_activation(name)) for name in ACTIVATIONS.names()}
    torch_acts = {
        nn.ReLU,
        nn.ReLU6,
        nn.LeakyReLU,
        nn.PReLU,
        nn.RReLU,
        nn.ELU,
        nn.SELU,
        nn.CELU,
        nn.GELU,
        nn.SiLU,
        nn.Mish,
        nn.Tanh,
        nn.Sigmoid,
        nn.Hardtanh,
        nn.Softplus,
    }
    return tuple(registered | torch_acts)


def activation_sparsity(
    model: nn.Module,
    images: torch.Tensor,
    *,
    eps: float = 0.0,
    layers: Sequence[str] | None = None,
    batch_size: int = 256,
    transform: Transform | None = None,
) -> list[SparsityRow]:
    """Per-layer share of activations with ``|a| <= eps`` over ``images`` (Handbook §3.1.2).

    ``eps = 0`` counts exact zeros, the natural measure after ReLU; for smooth activations
    (tanh, ELU) pass a small ``eps``. Default layers: every activation module, in the order
    they are registered. Counts are summed over all calls of a layer and all images.
    """
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    if layers is None:
        kinds = activation_types()
        layers = [n for n, m in model.named_modules() if n and isinstance(m, kinds)]
    if not layers:
        raise ValueError(f"{type(model).__name__} has no activation layers; name the layers")
    zeros = dict.fromkeys(layers, 0)
    totals = dict.fromkeys(layers, 0)
    handles = []
    for name in layers:

        def hook(_m, _a, output, name=name):
            a = output if isinstance(output, torch.Tensor) else output[0]
            zeros[name] += int((a.abs() <= eps).sum())
            totals[name] += a.numel()

        handles.append(get_layer(model, name).register_forward_hook(hook))
    try:
        with eval_mode(model), torch.no_grad():
            for _, x in batches(images, batch_size, transform, model_device(model)):
                model(x)
    finally:
        for handle in handles:
            handle.remove()
    modules = dict(model.named_modules())
    return [
        SparsityRow(n, type(modules[n]).__name__, zeros[n] / max(totals[n], 1), totals[n])
        for n in layers
        if totals[n]
    ]


def pick_channels(num_channels: int, n: int, seed: int = 0) -> list[int]:
    """``n`` distinct channel ids out of ``num_channels``, fixed by ``seed`` (same for every
    image, as in Handbook §3.1.2 where the same 4 random channels are shown for all images)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randperm(num_channels, generator=gen)[: min(n, num_channels)].tolist()


@dataclass
class DistributedView:
    """Which channels fire where (overlay ``maps``) and on which images (``peaks``/``fires``)."""

    layer: str
    channels: list[int]  # the overlay channels (seeded random)
    maps: torch.Tensor  # (B, len(channels), h, w) their maps
    active_fraction: torch.Tensor  # (B, len(channels)) share of positions with a > 0
    matrix_channels: list[int]  # the channels of the image x channel matrix
    peaks: torch.Tensor  # (B, len(matrix_channels)) per-image maximum
    fires: torch.Tensor  # (B, len(matrix_channels)) bool: peak > 0 and >= threshold * best


def distributed_view(
    model: nn.Module,
    layer: str,
    images: torch.Tensor,
    *,
    n_channels: int = 4,
    matrix_channels: int = 32,
    seed: int = 0,
    threshold: float = 0.5,
    transform: Transform | None = None,
) -> DistributedView:
    """Handbook §3.1.2: a fixed random set of channels across several images.

    ``fires[i, c]``: channel c's peak on image i is positive and at least ``threshold`` times its
    largest peak over the images; each concept (image) lights up several channels and each
    channel several images. The matrix channels start with the overlay channels.
    """
    maps = feature_maps(model, layer, images, transform=transform).float()
    num = maps.shape[1]
    shown = pick_channels(num, n_channels, seed)
    rest = [c for c in pick_channels(num, num, seed + 1) if c not in shown]
    matrix = (shown + rest)[: max(matrix_channels, len(shown))]
    peaks = maps[:, matrix].amax(dim=(2, 3))  # (B, m, h, w) -> (B, m)
    best = peaks.amax(dim=0, keepdim=True)
    fires = (peaks > 0) & (peaks >= threshold * best)
    chosen = maps[:, shown]
    active = (chosen > 0).float().mean(dim=(2, 3))
    return DistributedView(layer, shown, chosen, active, matrix, peaks, fires)
