"""Tests for algorithms.networks (registry, shapes, parameter counts,
torch.func compatibility, error messages, CLI)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.func import functional_call, jvp

from algorithms.networks import (
    NETWORKS, NetworkSpec, build_network, check_network, count_parameters, list_networks,
)
from algorithms.networks.cnn13 import CNN13

REPO = Path(__file__).resolve().parents[1]
EXPECTED = {"mlp_2_4_2", "mlp", "cnn_small", "cnn_small_bn", "cnn13", "wrn28_2", "wrn28_8"}


def test_registry_contents():
    assert EXPECTED <= set(list_networks())
    assert list_networks() == sorted(NETWORKS)
    for name, spec in NETWORKS.items():
        assert isinstance(spec, NetworkSpec) and spec.name == name
        assert spec.description and spec.accepts(spec.default_input_shape)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shapes_and_features_contract(name):
    torch.manual_seed(0)
    shape = NETWORKS[name].default_input_shape
    num_classes, batch = 7, 2
    model = build_network(name, shape, num_classes)
    model.eval()  # deterministic BN / dropout for the equality check
    x = torch.randn(batch, *shape)
    with torch.no_grad():
        logits = model(x)
        feats = model.features(x)
        assert logits.shape == (batch, num_classes)
        assert feats.dim() == 2 and feats.shape[0] == batch
        assert isinstance(model.classifier, nn.Linear)
        assert feats.shape[1] == model.classifier.in_features == model.num_features
        assert model.classifier.out_features == num_classes
        torch.testing.assert_close(model.classifier(feats), logits)
    if name == "wrn28_8":
        return  # same code as wrn28_2 (tested below); its backward is slow on CPU
    # train mode also works and gives finite logits with gradients
    model.train()
    out = model(x)
    out.sum().backward()
    assert torch.isfinite(out).all()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("shape,pooled", [((1, 8, 8), False), ((1, 28, 28), True), ((3, 32, 32), True)])
def test_cnn_small_input_sizes(shape, pooled):
    model = build_network("cnn_small", shape, 10)
    assert any(isinstance(m, nn.MaxPool2d) for m in model.modules()) == pooled
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.Dropout)) for m in model.modules())
    assert len(list(model.buffers())) == 0
    assert model(torch.randn(2, *shape)).shape == (2, 10)
    bn = build_network("cnn_small_bn", shape, 10)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in bn.modules()) == 3


def test_mlp_2_4_2_parameter_count():
    model = build_network("mlp_2_4_2", (2,), 2)
    assert count_parameters(model) == 2 * 4 + 4 + 4 * 2 + 2 == 22
    assert model.features(torch.randn(5, 2)).shape == (5, 4)


def test_mlp_parameter_count():
    model = build_network("mlp", (5,), 3)
    assert count_parameters(model) == (5 * 64 + 64) + (64 * 64 + 64) + (64 * 3 + 3)


def test_wrn28_2_parameter_count():
    n = count_parameters(build_network("wrn28_2", (3, 32, 32), 10))
    assert abs(n - 1.47e6) / 1.47e6 < 0.03
    assert n == 1_467_610
    model = build_network("wrn28_2", (3, 32, 32), 10)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(m.momentum == 0.001 for m in bns)
    lrelus = [m for m in model.modules() if isinstance(m, nn.LeakyReLU)]
    # in place on the fresh BatchNorm outputs (see test_wrn_inplace_activations_change_nothing)
    assert lrelus and all(m.negative_slope == 0.1 and m.inplace for m in lrelus)
    assert model.num_features == 128


def test_wrn28_8_width():
    model = build_network("wrn28_8", (3, 32, 32), 10)
    assert model.num_features == 512
    assert count_parameters(model) == 23_354_842


def _cnn13_hand_count(cin: int, num_classes: int) -> int:
    # (kernel, in, out) for the nine conv layers, no bias (BN follows)
    convs = [(3, cin, 128), (3, 128, 128), (3, 128, 128),
             (3, 128, 256), (3, 256, 256), (3, 256, 256),
             (3, 256, 512), (1, 512, 256), (1, 256, 128)]
    total = 0
    for k, i, o in convs:
        total += k * k * i * o  # conv weight
        total += 2 * o          # BN gamma + beta
    total += 128 * num_classes + num_classes  # final Linear
    return total


@pytest.mark.parametrize("cin,num_classes", [(3, 10), (3, 100), (1, 10)])
def test_cnn13_parameter_count(cin, num_classes):
    model = build_network("cnn13", (cin, 32, 32), num_classes)
    assert count_parameters(model) == _cnn13_hand_count(cin, num_classes)
    if (cin, num_classes) == (3, 10):
        assert count_parameters(model) == 3_121_802


def test_cnn13_structure_and_dropout_option():
    model = build_network("cnn13", (3, 32, 32), 10)
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == 9
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 9
    assert not any(isinstance(m, nn.Dropout) for m in model.modules())
    drop = CNN13(num_classes=10, dropout=0.5)
    assert sum(isinstance(m, nn.Dropout) for m in drop.modules()) == 2
    assert count_parameters(drop) == count_parameters(model)
    # 28x28 inputs are accepted too (28 -> 14 -> 7 -> 5 after the valid conv)
    assert build_network("cnn13", (3, 28, 28), 10)(torch.randn(2, 3, 28, 28)).shape == (2, 10)


def _assert_matches_fd(exact: torch.Tensor, fd: torch.Tensor) -> None:
    """jvp vs central finite difference for a piecewise-linear network.

    Rarely a pre-activation lies within +-eps of a LeakyReLU / max-pool kink;
    the finite difference then averages two slopes for that unit and is off by
    ~1e-4 relative (for every output of that sample).  So: all elements
    loosely (a wrong jvp is off by O(1)), and the median error to round-off
    precision.
    """
    torch.testing.assert_close(exact, fd, rtol=1e-3, atol=1e-6)
    err = (exact - fd).abs()
    assert err.median() <= 1e-8 + 1e-5 * exact.abs().median(), err.max()


@pytest.mark.parametrize("name,shape", [("mlp", (6,)), ("mlp_2_4_2", (2,)),
                                        ("cnn_small", (1, 8, 8)), ("cnn_small", (1, 28, 28))])
def test_functional_call_and_jvp(name, shape):
    torch.manual_seed(0)
    model = build_network(name, shape, 4).double()
    params = {k: v.detach().clone() for k, v in model.named_parameters()}
    x = torch.randn(3, *shape, dtype=torch.double)

    # functional_call with the module's own parameters reproduces forward
    torch.testing.assert_close(functional_call(model, params, (x,)), model(x))
    # ... and with other parameters differs from it, deterministically
    shifted = {k: v + 0.1 for k, v in params.items()}
    out_shifted = functional_call(model, shifted, (x,))
    assert not torch.allclose(out_shifted, model(x))
    torch.testing.assert_close(functional_call(model, shifted, (x,)), out_shifted)

    # jvp w.r.t. the parameters against a central finite difference.  The
    # networks are piecewise linear (LeakyReLU, max-pool): the tangent and eps
    # are small so that (almost surely) no unit crosses a kink within +-eps.
    tangent = {k: 1e-2 * torch.randn_like(v) for k, v in params.items()}

    def f(p):
        return functional_call(model, p, (x,))

    out, dout = jvp(f, (params,), (tangent,))
    torch.testing.assert_close(out, model(x))
    eps = 1e-6
    plus = f({k: params[k] + eps * tangent[k] for k in params})
    minus = f({k: params[k] - eps * tangent[k] for k in params})
    fd = (plus - minus) / (2 * eps)
    _assert_matches_fd(dout, fd)

    # jvp w.r.t. the input as well (features path)
    vx = 1e-2 * torch.randn_like(x)
    _, dfeat = jvp(model.features, (x,), (vx,))
    fd_x = (model.features(x + eps * vx) - model.features(x - eps * vx)) / (2 * eps)
    _assert_matches_fd(dfeat, fd_x)


def test_second_order_through_cnn_small():
    """Double backward (virtual SGD step, as in the meta-learning methods) works."""
    torch.manual_seed(0)
    model = build_network("cnn_small", (1, 8, 8), 3)
    params = dict(model.named_parameters())
    x, y = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 0])
    loss = nn.functional.cross_entropy(functional_call(model, params, (x,)), y)
    grads = torch.autograd.grad(loss, list(params.values()), create_graph=True)
    new = {k: v - 0.1 * g for (k, v), g in zip(params.items(), grads)}
    outer = nn.functional.cross_entropy(functional_call(model, new, (x,)), y)
    outer.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def _out_of_place(model: nn.Module) -> nn.Module:
    for m in model.modules():
        if isinstance(m, nn.LeakyReLU):
            m.inplace = False
    return model


def test_wrn_inplace_activations_change_nothing():
    """WRN's in-place LeakyReLUs against the same network out of place (float64, train-mode BN):
    identical logits, parameter gradients, BN statistics, jvp, and second-order meta-gradient."""
    torch.manual_seed(0)
    inplace = build_network("wrn28_2", (3, 8, 8), 4).double()
    ref = _out_of_place(build_network("wrn28_2", (3, 8, 8), 4).double())
    ref.load_state_dict(inplace.state_dict())
    x, y = torch.randn(5, 3, 8, 8, dtype=torch.double), torch.tensor([0, 1, 2, 3, 0])
    tangent = {k: torch.randn_like(v) for k, v in inplace.named_parameters()}

    def everything(model):
        model.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        grads = [p.grad.clone() for p in model.parameters()]
        params = {k: v.detach().clone().requires_grad_(True) for k, v in model.named_parameters()}
        # the buffers are updated by the forward above; functional calls below use batch statistics
        buffers = {k: None if "running" in k or "num_batches" in k else v for k, v in model.named_buffers()}
        _, dout = jvp(lambda p: functional_call(model, (p, buffers), (x,), strict=False), (params,), (tangent,))
        inner = nn.functional.cross_entropy(functional_call(model, (params, buffers), (x,), strict=False), y)
        g = torch.autograd.grad(inner, list(params.values()), create_graph=True)
        stepped = {k: v - 0.1 * gk for (k, v), gk in zip(params.items(), g)}
        outer = nn.functional.cross_entropy(functional_call(model, (stepped, buffers), (x,), strict=False), y)
        second = torch.autograd.grad(outer, list(params.values()))
        return [loss.detach(), *grads, *model.buffers(), dout, *second]

    for a, b in zip(everything(inplace), everything(ref), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_unknown_name_raises_one_line_listing_names():
    with pytest.raises(ValueError) as exc:
        build_network("resnet9000", (3, 32, 32), 10)
    msg = str(exc.value)
    assert "\n" not in msg and "resnet9000" in msg
    assert all(n in msg for n in EXPECTED)
    with pytest.raises(ValueError):
        check_network("resnet9000", (3, 32, 32))


@pytest.mark.parametrize("name,shape", [("cnn13", (3, 16, 16)), ("cnn13", (784,)),
                                        ("mlp_2_4_2", (1, 8, 8)), ("wrn28_2", (2,)),
                                        ("cnn_small", (8, 8))])
def test_incompatible_shape_raises_one_line(name, shape):
    for call in (lambda: check_network(name, shape), lambda: build_network(name, shape, 10)):
        with pytest.raises(ValueError) as exc:
            call()
        msg = str(exc.value)
        assert "\n" not in msg and name in msg and str(tuple(shape)) in msg
        assert all(n in msg for n in EXPECTED)


def test_check_network_accepts_natural_shapes_and_lists():
    for name, spec in NETWORKS.items():
        check_network(name, spec.default_input_shape)
        check_network(name, list(spec.default_input_shape))  # lists are fine
    with pytest.raises(ValueError):
        build_network("mlp", (2,), 0)


def test_cli_table_mentions_every_network():
    proc = subprocess.run([sys.executable, "-m", "algorithms.networks"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    for name, spec in NETWORKS.items():
        assert name in lines, name
        assert str(spec.default_input_shape) in lines[name]
    assert "1,467,610" in lines["wrn28_2"] and "3,121,802" in lines["cnn13"]
    assert "28,714" in lines["cnn_small"]


def test_cnn_tiny_is_cnn_small_at_width_8():
    model = build_network("cnn_tiny", (1, 28, 28), 10)
    # conv 1->8, 8->8, 8->16 (3x3 with bias) and Linear(16, 10), counted by hand
    assert count_parameters(model) == (8 * 9 + 8) + (8 * 8 * 9 + 8) + (16 * 8 * 9 + 16) + (16 * 10 + 10)
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert any(isinstance(m, torch.nn.MaxPool2d) for m in model.modules())
