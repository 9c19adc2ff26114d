"""CAM and Grad-CAM against answers known by construction (Zhou et al. 2016; Selvaraju et al.
2017): a toy net whose class is the quadrant of a bright square, and the CAM = Grad-CAM identity
for global-average-pooled linear nets."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.inspect.cam import class_activation_map, grad_cam
from cnnlab.models import create_model

SIZE = 16


class QuadrantNet(nn.Module):
    """Class q = the quadrant (0 TL, 1 TR, 2 BL, 3 BR) holding a bright square.

    conv channel 0 is a 5x5 box filter minus 0.6 (fires on bright squares), channel 1 the
    negated box plus 0.4 (fires on dark squares, a distractor the head ignores). The score of
    quadrant q is the mean of channel 0's rectified map over that quadrant.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 5, padding=2)
        self.act = nn.ReLU()
        self.pool = nn.AvgPool2d(SIZE // 2)  # (B, 2, 16, 16) -> (B, 2, 2, 2)
        self.fc = nn.Linear(8, 4)
        with torch.no_grad():
            self.conv.weight.copy_(torch.stack([torch.ones(1, 5, 5), -torch.ones(1, 5, 5)]) / 25)
            self.conv.bias.copy_(torch.tensor([-0.6, 0.4]))
            self.fc.weight.zero_()
            self.fc.bias.zero_()
            for q in range(4):  # flattened (channel, row, col): channel 0 cell q is index q
                self.fc.weight[q, q] = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.act(self.conv(x))).flatten(1))


def square_images(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One image per quadrant: grey noise, a bright 4x4 square there, a dark one elsewhere."""
    x = 0.5 + 0.05 * torch.randn(4, 1, SIZE, SIZE, generator=gen)
    for q in range(4):
        r, c = divmod(q, 2)
        y0 = 8 * r + int(torch.randint(1, 4, (1,), generator=gen))
        x0 = 8 * c + int(torch.randint(1, 4, (1,), generator=gen))
        x[q, 0, y0 : y0 + 4, x0 : x0 + 4] = 1.0
        d = (q + 1) % 4  # the distractor in another quadrant
        dr, dc = divmod(d, 2)
        x[q, 0, 8 * dr + 2 : 8 * dr + 6, 8 * dc + 2 : 8 * dc + 6] = 0.0
    return x, torch.arange(4)


def quadrant(flat_index: torch.Tensor) -> torch.Tensor:
    row, col = flat_index // SIZE, flat_index % SIZE
    return (row >= SIZE // 2).long() * 2 + (col >= SIZE // 2).long()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_grad_cam_peak_lies_in_the_squares_quadrant(seed):
    x, quad = square_images(torch.Generator().manual_seed(seed))
    net = QuadrantNet()
    res = grad_cam(net, x, layer="act")
    assert torch.equal(res.targets, quad)  # the net answers right, by construction
    assert res.maps.shape == (4, SIZE, SIZE)
    peaks = res.maps.flatten(1).argmax(dim=1)
    assert torch.equal(quadrant(peaks), quad)
    # The distractor channel has zero weight, so the dark square's quadrant stays cold.
    for q in range(4):
        dr, dc = divmod((q + 1) % 4, 2)
        cold = res.maps[q, 8 * dr : 8 * dr + 8, 8 * dc : 8 * dc + 8]
        assert cold.max() < 0.05 * res.maps[q].max()


def test_grad_cam_default_layer_and_explicit_target():
    x, _ = square_images(torch.Generator().manual_seed(0))
    net = QuadrantNet()
    auto = grad_cam(net, x)
    assert auto.layer == "act"  # the last non-pooling layer with spatial maps
    other = grad_cam(net, x, layer="act", target=3)
    assert torch.equal(other.targets, torch.full((4,), 3))
    scores = net(x)[:, 3]
    torch.testing.assert_close(other.scores, scores)


class GapNet(nn.Module):
    """conv -> ReLU -> conv -> ReLU -> GAP -> linear, with the zoo's forward_features/head."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 6, 3, padding=1), nn.ReLU()
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(6, 5)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x)).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


def test_cam_is_the_head_weighted_sum_of_the_pooled_maps():
    torch.manual_seed(0)
    net, x = GapNet(), torch.randn(3, 3, 8, 8)
    cam = class_activation_map(net, x, upsample=False)
    assert cam.layer == "features"  # found automatically: the maps whose mean is the feature
    maps = net.features(x).detach()
    w = net.head.weight.detach()
    expected = torch.einsum("bk,bkhw->bhw", w[cam.targets], maps)
    torch.testing.assert_close(cam.maps, expected)
    # Zhou et al.: the mean of M_c plus the bias is the class score
    logits = net(x).detach()
    torch.testing.assert_close(cam.maps.mean((1, 2)) + net.head.bias[cam.targets], cam.scores)
    torch.testing.assert_close(cam.scores, logits.max(1).values)


@pytest.mark.parametrize("name", ["gapnet", "resnet20", "mobilenet_v1"])
def test_cam_equals_grad_cam_for_gap_linear_nets(name):
    """d score_c / d A_k(i, j) = w_ck / (h w)  =>  Grad-CAM = ReLU(CAM) / (h w)."""
    torch.manual_seed(0)
    if name == "gapnet":
        net, x = GapNet(), torch.randn(3, 3, 8, 8)
    else:
        narrow = {"width": 0.5} if name == "resnet20" else {"alpha": 0.25}
        net = create_model(name, num_classes=6, in_chans=3, input_size=32, **narrow)
        x = torch.randn(3, 3, 32, 32)
    for target in (None, 2):
        cam = class_activation_map(net, x, target=target, upsample=False)
        gc = grad_cam(net, x, layer=cam.layer, target=target, upsample=False)
        h, w = cam.maps.shape[-2:]
        assert torch.equal(cam.targets, gc.targets)
        scale = F.relu(cam.maps).amax()
        assert scale > 1e-3  # a non-trivial map: part of it is positive evidence
        torch.testing.assert_close(gc.maps * (h * w) / scale, F.relu(cam.maps) / scale)
        up = grad_cam(net, x, layer=cam.layer, target=target)
        assert up.maps.shape == (3, *x.shape[-2:])


def test_cam_of_class_map_nets_is_the_class_map():
    torch.manual_seed(0)
    model = create_model("nin", num_classes=4, in_chans=1, input_size=28).eval()
    x = torch.randn(2, 1, 28, 28)
    cam = class_activation_map(model, x, upsample=False)
    with torch.no_grad():
        maps = model.class_maps(x)
    torch.testing.assert_close(cam.maps, maps[torch.arange(2), cam.targets])


def test_cam_refuses_nets_without_gap_linear_head():
    model = create_model("cnn2", num_classes=10, in_chans=1, input_size=28)
    with pytest.raises(ValueError, match=r"CAM \(Zhou et al. 2016\) needs .*Use Grad-CAM"):
        class_activation_map(model, torch.randn(2, 1, 28, 28))
    gapnet = GapNet()
    with pytest.raises(ValueError, match=r"layer 'features.1' has maps"):
        class_activation_map(gapnet, torch.randn(2, 3, 8, 8), layer="features.1")


def test_grad_cam_errors_are_clear():
    net, x = QuadrantNet(), torch.rand(2, 1, SIZE, SIZE)
    with pytest.raises(ValueError, match=r"no layer 'actt'.*Did you mean 'act'"):
        grad_cam(net, x, layer="actt")
    with pytest.raises(ValueError, match=r"layer 'fc' outputs shape \(2, 4\); Grad-CAM needs"):
        grad_cam(net, x, layer="fc")
    with pytest.raises(ValueError, match=r"target must be a class in \[0, 4\)"):
        grad_cam(net, x, layer="act", target=7)
    with pytest.raises(ValueError, match=r"normalise them first"):
        grad_cam(net, (x * 255).to(torch.uint8), layer="act")


def test_cam_tools_leave_the_model_untouched():
    torch.manual_seed(0)
    net, x = GapNet().train(), torch.randn(2, 3, 8, 8)
    before = net(x).detach()
    for fn in (class_activation_map, grad_cam):
        fn(net, x)
    assert net.training and all(m.training for m in net.modules())
    assert all(p.grad is None for p in net.parameters())  # no gradients left on the weights
    for m in net.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks
    torch.testing.assert_close(net(x), before)
