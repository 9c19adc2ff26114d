"""Multi-layer feature fusion (handbook §13.2.1): one network's layers as an ensemble.

Features of several layers (named like ``cnnlab inspect --layers`` prints them) are taken with
forward hooks, each reduced to a vector and concatenated; a new linear classifier is trained on
them with the backbone frozen. The book does not say how a map becomes a vector (E.6 item 64);
RECONSTRUCTED default: global average pooling of each (B, C, h, w) map to (B, C) (2-D outputs
are kept as they are), then l2 normalisation per layer so that no layer dominates by scale.
The book's advice: take the last few layers, near the objective; shallow layers may hurt.

Training: features of the training split are extracted once (no augmentation), then the
classifier is fitted in a closed loop: full-batch L-BFGS or a few epochs of mini-batch Adam.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnlab.ensembles.combine import EnsembleError
from cnnlab.inspect.layers import capture, eval_mode, get_layer, run_until


def pool_and_normalize(output: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> global average pool -> (B, C); (B, D) kept; then unit l2 norm per row."""
    if output.dim() == 4:
        output = output.mean(dim=(2, 3))
    elif output.dim() == 3:
        output = output.mean(dim=2)
    elif output.dim() != 2:
        raise EnsembleError(
            f"feature fusion: cannot pool a layer output of shape {tuple(output.shape)}"
        )
    return F.normalize(output.float(), dim=1)


class FeatureFusion(nn.Module):
    """Frozen ``backbone`` + pooled, l2-normalised features of ``layers`` + a linear head."""

    def __init__(self, backbone: nn.Module, layers: Sequence[str], num_classes: int) -> None:
        super().__init__()
        if not layers:
            raise EnsembleError("feature fusion needs at least one layer name")
        for name in layers:
            get_layer(backbone, name)  # a clear error (with close matches) for a wrong name
        self.backbone = backbone.requires_grad_(False)
        self.layers = list(layers)
        self.num_classes = num_classes
        self.head: nn.Linear | None = None  # sized when the feature dimension is known
        self.dims: list[int] = []

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, sum of layer widths)`` fused features (backbone in eval mode, no gradients)."""
        with (
            torch.no_grad(),
            eval_mode(self.backbone),
            capture(self.backbone, self.layers, stop=True) as out,
        ):
            run_until(self.backbone, x)
        parts = [pool_and_normalize(out[name]) for name in self.layers]
        self.dims = [p.shape[1] for p in parts]
        return torch.cat(parts, dim=1)

    @property
    def feature_dim(self) -> int:
        if not self.dims:
            raise EnsembleError("feature fusion: the feature dimension is known after features()")
        return sum(self.dims)

    def extract(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]):
        """Fused features (N, D) and targets (N,) of a whole loader."""
        feats, ys = [], []
        for x, y in batches:
            feats.append(self.features(x).cpu())
            ys.append(y.cpu())
        if not ys:
            raise EnsembleError("feature fusion: the loader yielded no batches")
        return torch.cat(feats), torch.cat(ys)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.head is None:
            raise EnsembleError("feature fusion: call fit() before using the model")
        return self.head(self.features(x))

    def fit(
        self,
        train_batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
        *,
        optimizer: str = "adam",
        epochs: int = 50,
        lr: float = 0.1,  # unit-norm features need large head weights: a large step
        weight_decay: float = 1e-4,
        batch_size: int = 256,
        seed: int = 0,
    ) -> list[float]:
        """Extract the training features once, fit the linear head; per-epoch training losses."""
        feats, ys = self.extract(train_batches)
        device = next(iter(self.backbone.parameters()), feats).device
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.head = nn.Linear(feats.shape[1], self.num_classes)
        self.head.to(device)
        feats, ys = feats.to(device), ys.to(device)
        if optimizer == "lbfgs":
            return [self._fit_lbfgs(feats, ys, epochs, weight_decay)]
        if optimizer != "adam":
            raise EnsembleError(
                f"feature fusion: optimizer must be 'adam' or 'lbfgs', got {optimizer!r}"
            )
        opt = torch.optim.Adam(self.head.parameters(), lr=lr, weight_decay=weight_decay)
        gen = torch.Generator().manual_seed(seed)
        history = []
        for _ in range(epochs):
            perm = torch.randperm(len(ys), generator=gen).to(device)
            total = 0.0
            for start in range(0, len(ys), batch_size):
                idx = perm[start : start + batch_size]
                loss = F.cross_entropy(self.head(feats[idx]), ys[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
            history.append(total / len(ys))
        return history

    def _fit_lbfgs(self, feats: torch.Tensor, ys: torch.Tensor, iters: int, l2: float) -> float:
        assert self.head is not None
        head = self.head
        opt = torch.optim.LBFGS(head.parameters(), max_iter=max(iters, 20),
                                line_search_fn="strong_wolfe")  # fmt: skip

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = F.cross_entropy(head(feats), ys) + 0.5 * l2 * (head.weight**2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        with torch.no_grad():
            return F.cross_entropy(head(feats), ys).item()
