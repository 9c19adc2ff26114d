"""Multi-layer feature fusion (handbook §13.2.1, E.6 item 64): dimensions, pooling, training."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnlab.data.bundle import build_data
from cnnlab.ensembles import FeatureFusion, pool_and_normalize
from cnnlab.ensembles.loading import plain_train_loader
from cnnlab.evaluation.evaluate import evaluate


class Toy(nn.Module):
    """conv1 (4 maps) -> conv2 (6 maps) -> fc (8 units, sees positions) -> head."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1)
        self.fc = nn.Linear(6 * 12 * 12, 8)
        self.head = nn.Linear(8, classes)

    def forward(self, x):
        x = F.relu(self.conv2(F.relu(self.conv1(x))))
        return self.head(F.relu(self.fc(x.flatten(1))))  # (B, 6, 12, 12) -> (B, 864)


def test_feature_dimension_is_the_sum_of_layer_widths():
    torch.manual_seed(0)
    x = torch.randn(5, 1, 12, 12)
    fusion = FeatureFusion(Toy(), ["conv1", "conv2"], num_classes=4)
    assert fusion.features(x).shape == (5, 10) and fusion.dims == [4, 6]
    fusion = FeatureFusion(Toy(), ["conv2", "fc", "head"], num_classes=4)
    assert fusion.features(x).shape == (5, 18) and fusion.feature_dim == 18


def test_each_layer_is_pooled_and_l2_normalised():
    maps = torch.randn(3, 4, 5, 5)
    got = pool_and_normalize(maps)
    assert torch.allclose(got, F.normalize(maps.mean(dim=(2, 3)), dim=1))
    assert torch.allclose(got.norm(dim=1), torch.ones(3))
    toy = Toy()
    fused = FeatureFusion(toy, ["conv1", "conv2"], 4).features(torch.randn(2, 1, 12, 12))
    assert torch.allclose(fused[:, :4].norm(dim=1), torch.ones(2), atol=1e-6)
    assert torch.allclose(fused[:, 4:].norm(dim=1), torch.ones(2), atol=1e-6)


def test_fusion_trains_a_linear_classifier_with_a_frozen_backbone(tiny_cfg):
    cfg = tiny_cfg()
    data = build_data(cfg.data, seed=0, device=torch.device("cpu"))
    torch.manual_seed(0)
    backbone = Toy()
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    for optimizer in ("adam", "lbfgs"):
        fusion = FeatureFusion(backbone, ["conv2", "fc"], num_classes=4)
        losses = fusion.fit(plain_train_loader(data), optimizer=optimizer, epochs=50)
        assert fusion.head.in_features == 14
        if optimizer == "adam":
            assert losses[-1] < losses[0]
        res = evaluate(fusion, data.test, num_classes=4)
        assert res.accuracy > 0.55  # 4 classes: chance is 0.25 (random backbone)
    for k, v in backbone.state_dict().items():
        assert torch.equal(v, before[k])


def test_unknown_layer_and_unfitted_use():
    with pytest.raises(ValueError, match="has no layer 'conv3'.*conv1"):
        FeatureFusion(Toy(), ["conv3"], 4)
    with pytest.raises(ValueError, match="call fit"):
        FeatureFusion(Toy(), ["conv1"], 4)(torch.randn(1, 1, 12, 12))
