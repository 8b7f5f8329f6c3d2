"""The CNN-13 variants with input noise / dropout: shapes, structure, train vs eval behaviour."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from algorithms.networks import build_network, count_parameters
from algorithms.networks.cnn13 import CNN13, GaussianNoise

VARIANTS = {  # name -> (noise std, dropout module type or None)
    "cnn13": (0.0, None),
    "cnn13_dropout": (0.0, nn.Dropout),
    "cnn13_dropout2d": (0.0, nn.Dropout2d),
    "cnn13_noise_dropout": (0.15, nn.Dropout),
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_shapes_parameters_and_layers(name):
    std, drop = VARIANTS[name]
    model = build_network(name, (3, 32, 32), 10)
    assert model(torch.randn(4, 3, 32, 32)).shape == (4, 10)
    assert model.features(torch.randn(4, 3, 32, 32)).shape == (4, 128)
    assert count_parameters(model) == 3_121_802  # noise and dropout add no parameters
    drops = [m for m in model.modules() if isinstance(m, (nn.Dropout, nn.Dropout2d))]
    assert len(drops) == (2 if drop else 0) and all(type(m) is drop and m.p == 0.5 for m in drops)
    noise = [m for m in model.modules() if isinstance(m, GaussianNoise)]
    assert [m.std for m in noise] == ([std] if std else [])


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_eval_mode_is_deterministic_and_train_mode_is_not_when_regularised(name):
    torch.manual_seed(0)
    model = build_network(name, (3, 32, 32), 10)
    x = torch.randn(3, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        a, b = model(x), model(x)
    assert torch.equal(a, b)
    model.train()
    with torch.no_grad():
        c, d = model(x), model(x)
    assert torch.equal(c, d) == (name == "cnn13")


def test_gaussian_noise_has_the_stated_std_in_training_only():
    layer = GaussianNoise(0.15)
    torch.manual_seed(1)
    x = torch.zeros(200_000)
    out = layer.train()(x)
    assert abs(float(out.std()) - 0.15) < 0.002 and abs(float(out.mean())) < 0.002
    assert torch.equal(layer.eval()(x), x)
    with pytest.raises(ValueError):
        GaussianNoise(-1.0)


def test_channel_dropout_drops_whole_feature_maps():
    torch.manual_seed(2)
    model = CNN13(num_classes=10, dropout=0.5, dropout_kind="channel").train()
    seen = []
    model.body[10].register_forward_hook(lambda m, i, o: seen.append(o))  # the first Dropout2d
    assert isinstance(model.body[10], nn.Dropout2d)
    model(torch.randn(2, 3, 32, 32))
    maps = seen[0].flatten(2)  # [B, C, H*W]: a dropped channel is zero everywhere
    zero = (maps == 0).all(dim=2)
    assert 0.3 < float(zero.float().mean()) < 0.7
    assert not ((maps == 0).any(dim=2) & ~zero).any()  # no partly zeroed map
    with pytest.raises(ValueError):
        CNN13(dropout=0.5, dropout_kind="pixel")
