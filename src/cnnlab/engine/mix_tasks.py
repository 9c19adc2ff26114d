"""Mixup and CutMix as training tasks: mix pairs of images, mix their losses the same way.

Mixup (Zhang et al. 2018, "mixup: Beyond Empirical Risk Minimization") blends two images,
``lam * x_a + (1 - lam) * x_b``; CutMix (Yun et al. 2019) pastes a box of x_b into x_a and sets
lam to the share of x_a that remains. Both use lam ~ Beta(alpha, alpha) once per batch, pair
each sample with a random partner from the same batch, and train on
``lam * loss(logits, y_a) + (1 - lam) * loss(logits, y_b)``.

Randomness: the draws of step t come from a generator seeded with (seed, t); ``seed`` defaults
to a number drawn from torch's global RNG (so ``seed_everything`` fixes it) and is kept, with
the step counter, in buffers saved with the checkpoint, so a resumed run mixes exactly as the
uninterrupted one would.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn

from cnnlab.engine.tasks import Task

__all__ = ["MIX_TASKS", "CutMixTask", "MixTask", "MixupTask"]


class MixTask(Task):
    """Shared machinery: the loss, alpha, probability p, seed and step counter."""

    name = "mix"

    def __init__(
        self, loss: nn.Module, *, alpha: float = 1.0, p: float = 1.0, seed: int | None = None
    ) -> None:
        super().__init__()
        if not (isinstance(alpha, (int, float)) and alpha > 0 and math.isfinite(alpha)):
            raise ValueError(f"{self.name}: alpha must be a number > 0, got {alpha!r}")
        if not (isinstance(p, (int, float)) and 0 <= p <= 1):
            raise ValueError(f"{self.name}: p must be in [0, 1], got {p!r}")
        self.loss = loss
        self.alpha, self.p = float(alpha), float(p)
        if seed is None:
            seed = int(torch.randint(0, 2**62, (), dtype=torch.int64))  # from the global RNG
        self.register_buffer("seed", torch.tensor(int(seed), dtype=torch.int64))
        self.register_buffer("step", torch.zeros((), dtype=torch.int64))
        # Host copies of (seed, step): reading the buffers on a GPU every step would wait for
        # the device each time (issue 23). Re-read after a state dict is loaded.
        self._host: list[int] | None = None
        self.register_load_state_dict_post_hook(lambda module, _keys: module._forget_host())

    def _forget_host(self) -> None:
        self._host = None

    def set_step(self, step: int) -> None:
        """Continue from training step ``step`` (on resume: ``TrainState.step``)."""
        self.step.fill_(int(step))
        self._host = None

    def draws(self, batch: int) -> tuple[float | None, torch.Tensor, np.random.Generator]:
        """(lam or None if this step is not mixed, partner permutation, rng) for this step."""
        if self._host is None:
            self._host = [int(self.seed), int(self.step)]
        rng = np.random.default_rng(list(self._host))
        self.step += 1
        self._host[1] += 1
        apply = rng.random() < self.p
        perm = torch.from_numpy(rng.permutation(batch))
        return (float(rng.beta(self.alpha, self.alpha)) if apply else None), perm, rng

    def mix(
        self, x: torch.Tensor, x_b: torch.Tensor, lam: float, rng: np.random.Generator
    ) -> tuple[torch.Tensor, float]:
        """The mixed batch and the share ``lam`` of the loss that goes to the original labels."""
        raise NotImplementedError

    def training_step(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        lam, perm, rng = self.draws(x.shape[0])
        if lam is None:
            logits = model(x)
            return self.loss(logits, y), logits
        perm = perm.to(x.device, non_blocking=True)  # staged at once; no wait for the device
        mixed, lam = self.mix(x, x.index_select(0, perm), lam, rng)
        logits = model(mixed)
        y_b = y.index_select(0, perm)
        loss = lam * self.loss(logits, y) + (1.0 - lam) * self.loss(logits, y_b)
        return loss, logits

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, p={self.p}"


class MixupTask(MixTask):
    """Mixup: train on convex blends of image pairs and of their losses (Zhang et al. 2018)."""

    name = "mixup"

    def mix(
        self, x: torch.Tensor, x_b: torch.Tensor, lam: float, rng: np.random.Generator
    ) -> tuple[torch.Tensor, float]:
        return lam * x + (1.0 - lam) * x_b, lam


def cutmix_box(h: int, w: int, lam: float, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """Box (top, bottom, left, right) covering about 1 - lam of an h x w image, clipped to it.

    Its sides are sqrt(1 - lam) times the image's and its centre is uniform over the image, as
    in Yun et al.; clipping at the border makes the box smaller, so the caller recomputes lam.
    """
    cut = math.sqrt(1.0 - lam)
    ch, cw = int(h * cut), int(w * cut)
    cy, cx = int(rng.integers(h)), int(rng.integers(w))
    top, bottom = max(cy - ch // 2, 0), min(cy + ch // 2, h)
    left, right = max(cx - cw // 2, 0), min(cx + cw // 2, w)
    return top, bottom, left, right


class CutMixTask(MixTask):
    """CutMix: paste a random box from the partner image; lam = the area left (Yun et al. 2019)."""

    name = "cutmix"

    def mix(
        self, x: torch.Tensor, x_b: torch.Tensor, lam: float, rng: np.random.Generator
    ) -> tuple[torch.Tensor, float]:
        h, w = x.shape[2:]
        top, bottom, left, right = cutmix_box(h, w, lam, rng)
        mixed = x.clone()
        mixed[:, :, top:bottom, left:right] = x_b[:, :, top:bottom, left:right]
        return mixed, 1.0 - (bottom - top) * (right - left) / (h * w)


MIX_TASKS: dict[str, type[MixTask]] = {"mixup": MixupTask, "cutmix": CutMixTask}
