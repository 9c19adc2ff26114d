"""Fine-tuning (handbook §11.2.5): start from a trained checkpoint, with a new head when the
class count differs, the first stages frozen, and deeper stages learning faster.

A model's *stages* are its parametrised top-level blocks in forward order, head excluded;
a model with a single such block (a ``features`` Sequential) is split into that block's
parametrised layers. ResNets therefore have stem, layer1, layer2, ...; cnn2 has its conv1,
conv2 and FC-128 layers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from cnnlab.engine.checkpoint import CheckpointError


def _has_params(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


def model_stages(model: nn.Module) -> list[nn.Module]:
    """The parametrised blocks of ``model`` in forward order, without its head."""
    head = getattr(model, "head", None)
    blocks = [m for m in model.children() if m is not head and _has_params(m)]
    while len(blocks) == 1 and any(_has_params(c) for c in blocks[0].children()):
        blocks = [m for m in blocks[0].children() if _has_params(m)]
    return blocks


def load_pretrained(
    model: nn.Module, theirs: Mapping[str, torch.Tensor], checkpoint: str, arch: str, log=print
) -> list[str]:
    """Copy a trained run's weights (``theirs``, read by ``cnnlab.load`` from ``checkpoint``,
    a model ``arch``) into ``model``; a head whose shape differs (another class count) keeps
    its fresh initialisation. Returns the names of the tensors left as built."""
    ours = model.state_dict()
    kept = sorted(k for k in ours if k.startswith("head.") and k in theirs
                  and theirs[k].shape != ours[k].shape)  # fmt: skip
    other = [k for k in ours if not k.startswith("head.") and
             (k not in theirs or theirs[k].shape != ours[k].shape)]  # fmt: skip
    if other:
        raise CheckpointError(
            f"finetune.checkpoint {checkpoint}: its model ({arch!r}) does not match this one "
            f"outside the head, e.g. {', '.join(other[:3])}"
        )
    state = {k: (ours[k] if k in kept else theirs[k]) for k in ours}
    model.load_state_dict(state)
    if kept:
        log(f"fine-tuning: new head ({', '.join(kept)}), the rest from {checkpoint}")
    return kept


def freeze_stages(model: nn.Module, k: int) -> list[nn.Module]:
    """Stop gradients in the first ``k`` stages (their BN statistics still update)."""
    stages = model_stages(model)
    if k > len(stages):
        raise ValueError(f"finetune.freeze_stages={k}, but the model has {len(stages)} stages")
    for stage in stages[:k]:
        for p in stage.parameters():
            p.requires_grad_(False)
    return stages[:k]


def lr_scales(model: nn.Module, cfg: Any) -> list[tuple[list[nn.Parameter], float]]:
    """(parameters, lr multiplier) per stage and for the head: discriminative learning rates."""
    stages = model_stages(model)
    n = len(stages)
    groups = [(list(s.parameters()), cfg.stage_lr_decay ** (n - 1 - i))
              for i, s in enumerate(stages)]  # fmt: skip
    seen = {id(p) for ps, _ in groups for p in ps}
    head = getattr(model, "head", None)
    head_params = list(head.parameters()) if head is not None else []
    groups.append((head_params, cfg.head_lr_mult))
    seen |= {id(p) for p in head_params}
    rest = [p for p in model.parameters() if id(p) not in seen]
    if rest:  # e.g. a learnable layer outside the stages
        groups.append((rest, 1.0))
    return [(ps, s) for ps, s in groups if ps]
