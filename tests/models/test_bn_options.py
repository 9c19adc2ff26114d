"""Batch-normalisation model options: norm="none"|"bn", bn_position="before"|"after" (§11.2.3)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnlab.models import create_model

BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d)
#: Model -> (widths of the layers that get BN, default norm).
BN_SITES = {
    "cnn1": ([32], "none"),
    "cnn2": ([32, 64, 128], "none"),
    "lenet5": ([6, 16, 120, 84], "none"),
    "alexnet": ([96, 256, 384, 384, 256], "none"),
    "vgg11": ([64, 128, 256, 256, 512, 512, 512, 512], "none"),
    "vgg16": ([64, 64, 128, 128, *[256] * 3, *[512] * 6], "none"),
    "vgg_small": ([32, 32, 64, 64, 128, 128, 512, 128], "bn"),
}


def params(name: str, **options: object) -> int:
    with torch.device("meta"):  # shapes only: counting needs no memory or init
        model = create_model(name, num_classes=10, in_chans=1, input_size=28, **options)
    return sum(p.numel() for p in model.parameters())


def bn_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, BN_TYPES)]


@pytest.mark.parametrize("name", sorted(BN_SITES))
def test_parameter_counts_change_exactly_by_the_bn_parameters(name: str) -> None:
    widths, default = BN_SITES[name]
    bn = sum(2 * w for w in widths)  # gamma and beta per channel (running stats are buffers)
    bias = sum(widths)  # the bias of a layer BN directly follows is redundant and dropped
    none_count = params(name, norm="none")
    assert params(name) == (none_count if default == "none" else none_count + bn - bias)
    # BN before the activation replaces the layer bias; after it, the bias stays.
    assert params(name, norm="bn") - none_count == bn - bias
    assert params(name, norm="bn", bn_position="after") - none_count == bn


def test_defaults_keep_the_published_counts() -> None:
    assert params("cnn1") == 54_410
    assert params("cnn2") == 1_199_882
    assert params("lenet5") == 61_706
    assert params("vgg_small") == 944_810
    with torch.device("meta"):
        resnet = create_model("resnet20", num_classes=10, in_chans=3)
    assert sum(p.numel() for p in resnet.parameters()) == 269_722


def test_resnet_norm_none_removes_every_bn() -> None:
    def count(**options: object) -> tuple[int, int]:
        model = create_model("resnet20", num_classes=10, in_chans=3, **options)
        return sum(p.numel() for p in model.parameters()), len(bn_layers(model))

    with_bn, n_bn = count()
    without, n_none = count(norm="none")
    assert n_bn == 19 and n_none == 0
    channels = 16 + 6 * 16 + 6 * 32 + 6 * 64  # stem + two convs per block, 3 x 3 blocks
    assert with_bn - without == 2 * channels - channels  # BN params out, conv biases in
    plain = create_model("resnet20", num_classes=10, in_chans=3, norm="none", plain=True)
    assert not bn_layers(plain)
    proj = create_model("resnet18", num_classes=10, in_chans=3, width=0.25, norm="none")
    assert not bn_layers(proj)  # the 1x1 projection shortcuts lose their BN too
    assert proj(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("position", ["before", "after"])
def test_bn_position_orders_bn_and_activation(position: str) -> None:
    model = create_model("cnn2", num_classes=10, in_chans=1, norm="bn", bn_position=position)
    kinds = [type(m).__name__ for m in model.features]
    first = kinds[:3]
    assert first == (
        ["Conv2d", "BatchNorm2d", "ReLU"]
        if position == "before"
        else ["Conv2d", "ReLU", "BatchNorm2d"]
    )
    conv_bias = model.features[0].bias
    assert (conv_bias is None) == (position == "before")
    lenet = create_model("lenet5", num_classes=10, in_chans=1, norm="bn", bn_position=position)
    names = list(lenet.features._modules)
    assert names.index("bn1") - names.index("act1") == (-1 if position == "before" else 1)


@pytest.mark.parametrize("name", ["cnn1", "cnn2", "lenet5", "alexnet", "vgg11", "vgg_small"])
@pytest.mark.parametrize("position", ["before", "after"])
def test_bn_models_train_and_eval(name: str, position: str) -> None:
    torch.manual_seed(0)
    options = {"width": 0.25} if name in ("alexnet", "vgg11") else {}
    model = create_model(
        name, num_classes=10, in_chans=1, input_size=28, norm="bn", bn_position=position, **options
    )
    assert bn_layers(model)
    x = torch.randn(4, 1, 28, 28)
    model(x).logsumexp(1).sum().backward()
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.head(model.forward_features(x)))


def test_bn_uses_batch_statistics_in_training_and_running_statistics_in_eval() -> None:
    torch.manual_seed(0)
    model = create_model("cnn1", num_classes=10, in_chans=1, norm="bn")
    bn = model.bn
    x = torch.randn(8, 1, 28, 28) * 3 + 1
    model.train()
    with torch.no_grad():
        full = model(x)
        # Training mode: a sample's output depends on the rest of its batch.
        assert not torch.allclose(full[:4], model(x[:4]), atol=1e-4)
    assert bn.num_batches_tracked.item() == 2  # running statistics were updated
    model.eval()
    with torch.no_grad():
        running_mean, running_var = bn.running_mean.clone(), bn.running_var.clone()
        torch.testing.assert_close(model(x)[:4], model(x[:4]))  # independent of the batch
        assert torch.equal(bn.running_mean, running_mean)  # eval does not update them
        conv = model.conv(x)
        expected = (conv - running_mean[:, None, None]) / torch.sqrt(
            running_var[:, None, None] + bn.eps
        ) * bn.weight[:, None, None] + bn.bias[:, None, None]
        torch.testing.assert_close(bn(conv), expected)


def test_bn_recovers_its_input_with_gamma_sigma_and_beta_mu() -> None:
    """Handbook §11.2.3 / D.1: gamma = sigma_B, beta = mu_B gives back x (up to eps)."""
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(3).train()
    x = (
        torch.randn(6, 3, 5, 5, dtype=torch.float64)
        * torch.tensor([0.5, 2.0, 4.0]).view(1, 3, 1, 1).double()
        + torch.tensor([1.0, -2.0, 0.0]).view(1, 3, 1, 1).double()
    )
    bn = bn.double()
    mu = x.mean(dim=(0, 2, 3))
    var = x.var(dim=(0, 2, 3), unbiased=False)  # Algorithm 2 uses the biased batch variance
    with torch.no_grad():
        bn.weight.copy_(torch.sqrt(var + bn.eps))  # exact inverse of the normalisation
        bn.bias.copy_(mu)
        torch.testing.assert_close(bn(x), x)
        bn.weight.copy_(torch.sqrt(var))  # gamma = sigma_B exactly: equal up to eps
        torch.testing.assert_close(bn(x), x, atol=1e-4, rtol=1e-4)


def test_bad_norm_options_fail_clearly() -> None:
    with pytest.raises(ValueError, match=r"norm must be one of 'none', 'bn'; got 'layer'"):
        create_model("cnn1", num_classes=10, in_chans=1, norm="layer")
    with pytest.raises(ValueError, match=r"bn_position must be one of 'before', 'after'"):
        create_model("vgg11", num_classes=10, in_chans=1, input_size=28, bn_position="middle")
    with pytest.raises(ValueError, match="only available for variant='case_study'"):
        create_model("lenet5", num_classes=10, in_chans=1, variant="1998", norm="bn")
    with pytest.raises(ValueError, match="contradicts"):
        create_model("vgg11", num_classes=10, in_chans=1, input_size=28, batch_norm=False,
                     norm="bn")  # fmt: skip
    with pytest.raises(ValueError, match=r"norm must be one of"):
        create_model("resnet20", num_classes=10, in_chans=1, norm="group")


def test_legacy_batch_norm_flag_still_works() -> None:
    assert params("vgg11", batch_norm=True) == params("vgg11", norm="bn")
    assert params("vgg_small", batch_norm=False) == params("vgg_small", norm="none")
