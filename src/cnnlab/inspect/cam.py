"""Class activation maps: CAM (Zhou et al. 2016) and Grad-CAM (Selvaraju et al. 2017).

CAM applies to nets whose classifier sees the global average of the last conv maps ``A_k``
through a linear head: ``score_c = sum_k w_ck mean(A_k) + b_c``, so the map
``M_c = sum_k w_ck A_k`` shows where the evidence for class c lies (its mean is the score minus
the bias). Grad-CAM works for any CNN and any layer: the channel weights are the spatial means
of the gradients ``alpha_k = mean(d score_c / d A_k)``, and the map is ``ReLU(sum_k alpha_k A_k)``.
For a GAP-linear net ``d score_c / d A_k(i, j) = w_ck / (h w)``, so Grad-CAM = ReLU(CAM) / (h w).
(Handbook §5.2.2 uses such class heat maps to crop; §3.1.2 reads them as "where the net looks".)

Both run in eval mode; hooks are removed and train/eval flags restored afterwards. Maps come at
the layer's resolution or, with ``upsample=True``, bilinearly resized to the input size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.inspect.layers import (
    default_map_layer,
    eval_mode,
    first_tensor,
    get_layer,
    model_device,
)


@dataclass
class CamResult:
    """Maps (B, H, W), the class each map explains, that class's score, and the layer used."""

    maps: torch.Tensor
    targets: torch.Tensor  # (B,) int64
    scores: torch.Tensor  # (B,) logits of the targets
    layer: str
    method: str


def _targets(target: Any, logits: torch.Tensor) -> torch.Tensor:
    """Explained class per image: the prediction by default, else an int or (B,) ints."""
    if target is None:
        return logits.argmax(dim=1)
    t = torch.as_tensor(target, dtype=torch.long, device=logits.device)
    t = t.expand(len(logits)) if t.dim() == 0 else t
    k = logits.shape[1]
    if t.shape != (len(logits),) or t.min() < 0 or t.max() >= k:
        raise ValueError(f"target must be a class in [0, {k}) or one per image, got {target!r}")
    return t


def _resize(maps: torch.Tensor, size: tuple[int, int], upsample: bool) -> torch.Tensor:
    if not upsample or tuple(maps.shape[-2:]) == size:
        return maps
    return F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


def _check_images(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise ValueError("images must be a float (B, C, H, W) batch, normalised for the model")
    if not images.is_floating_point():
        raise ValueError(f"images are {images.dtype}: normalise them first (the run's Normalizer)")


def grad_cam(
    model: nn.Module,
    images: torch.Tensor,
    *,
    layer: str | None = None,
    target: Any = None,
    upsample: bool = True,
) -> CamResult:
    """Grad-CAM maps (Selvaraju et al. 2017) of ``layer`` (default: the last spatial layer).

    ``target``: class to explain, per image or for all (default: the predicted class).
    """
    _check_images(images)
    name = layer or default_map_layer(model, tuple(images.shape[1:]))
    module = get_layer(model, name)
    store: dict[str, torch.Tensor] = {}

    def keep(_m: nn.Module, _a: Any, output: Any) -> None:
        act = first_tensor(output, name)
        if act.dim() != 4:
            raise ValueError(
                f"layer {name!r} outputs shape {tuple(act.shape)}; Grad-CAM needs (B, C, h, w) "
                "feature maps: pick a conv layer or block (cnnlab inspect RUN --layers)"
            )
        store["act"] = act.detach().clone()  # later in-place ops must not change what we weigh
        act.register_hook(lambda grad: store.__setitem__("grad", grad.detach()))

    handle = module.register_forward_hook(keep)
    x = images.to(model_device(model)).detach().requires_grad_(True)  # a graph even if frozen
    try:
        with eval_mode(model), torch.enable_grad():
            logits = model(x)
            targets = _targets(target, logits)
            scores = logits.gather(1, targets[:, None])[:, 0]
            scores.sum().backward(inputs=[x])  # images are independent in eval mode
    finally:
        handle.remove()
    if "grad" not in store:
        raise ValueError(f"layer {name!r} is not on the path to the class scores")
    weights = store["grad"].mean(dim=(2, 3), keepdim=True)  # (B, K, h, w) -> (B, K, 1, 1)
    cam = F.relu((weights * store["act"]).sum(dim=1))  # (B, h, w)
    maps = _resize(cam, tuple(images.shape[-2:]), upsample)
    return CamResult(maps.detach(), targets.detach(), scores.detach(), name, "gradcam")


def _head_weight(model: nn.Module, num_classes: int) -> torch.Tensor:
    """(K, D) weights of the linear head; the identity for class-map nets (NIN, SqueezeNet)."""
    head = getattr(model, "head", None)
    if isinstance(head, nn.Linear):
        return head.weight.detach()
    if isinstance(head, nn.Identity):
        return torch.eye(num_classes, device=model_device(model))
    raise ValueError(
        f"CAM needs a linear (or identity) `head` after global average pooling; "
        f"{type(model).__name__}.head is {type(head).__name__}: use Grad-CAM instead"
    )


def _pooled_maps(model: nn.Module, x: torch.Tensor, layer: str | None):
    """Find (or check) the layer whose global average is the head's input; return its maps."""
    outs: list[tuple[str, torch.Tensor]] = []
    names = [layer] if layer else [n for n, _ in model.named_modules() if n]
    handles = [
        get_layer(model, n).register_forward_hook(
            lambda _m, _a, o, n=n: outs.append((n, first_tensor(o, n)))
        )
        for n in names
    ]
    try:
        with eval_mode(model), torch.no_grad():
            feats = model.forward_features(x)
            logits = model.head(feats)
    finally:
        for handle in handles:
            handle.remove()
    for name, out in reversed(outs):  # the outermost module with these maps finishes last
        fits = out.dim() == 4 and out.shape[1] == feats.shape[1] and out.shape[-2:].numel() > 1
        if fits and torch.allclose(out.mean(dim=(2, 3)), feats, rtol=1e-4, atol=1e-5):
            return name, out, logits
    where = f"layer {layer!r}" if layer else "no layer"
    raise ValueError(
        f"CAM (Zhou et al. 2016) needs features that are the global average of a conv layer's "
        f"maps; in {type(model).__name__} {where} has maps whose average is the head's input. "
        "Use Grad-CAM instead"
    )


def class_activation_map(
    model: nn.Module,
    images: torch.Tensor,
    *,
    target: Any = None,
    layer: str | None = None,
    upsample: bool = True,
) -> CamResult:
    """CAM maps ``M_c = sum_k w_ck A_k`` (Zhou et al. 2016) for a GAP-linear net.

    The model must have ``forward_features`` and ``head``; the maps ``A`` are found
    automatically as the layer whose spatial mean equals the features (or ``layer`` is checked
    to be that). Maps are not rectified (negative = evidence against the class).
    """
    _check_images(images)
    if not hasattr(model, "forward_features"):
        raise ValueError(f"CAM needs a cnnlab zoo model (forward_features + head), got {model!r}")
    x = images.to(model_device(model))
    name, maps, logits = _pooled_maps(model, x, layer)
    targets = _targets(target, logits)
    weight = _head_weight(model, logits.shape[1])[targets]  # (B, D)
    cam = torch.einsum("bd,bdhw->bhw", weight.to(maps.dtype), maps)
    scores = logits.gather(1, targets[:, None])[:, 0]
    maps_out = _resize(cam, tuple(images.shape[-2:]), upsample)
    return CamResult(maps_out, targets, scores, name, "cam")
