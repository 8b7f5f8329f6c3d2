"""Tests for the networks resnet26_shake, tcdcn and resnet18 (shapes,
feature/classifier contract, parameter counts against hand formulas and
published / torchvision figures, shake-shake semantics, torch.func)."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call, jvp

from algorithms.networks import NETWORKS, build_network, check_network, count_parameters
from algorithms.networks.resnet18 import ResNet18
from algorithms.networks.shake_shake import ShakeBlock, ShakeShakeMix, ShakeShakeResNet
from algorithms.networks.tcdcn import TCDCN

NEW = ["resnet26_shake", "tcdcn", "resnet18"]


# ----------------------------------------------------------------- contract
@pytest.mark.parametrize("name,shape", [("resnet26_shake", (3, 32, 32)), ("tcdcn", (1, 60, 60)),
                                        ("resnet18", (3, 64, 64)), ("resnet18", (1, 28, 28))])
def test_shapes_and_features_contract(name, shape):
    """Natural shapes, except resnet18 (224x224 is slow on CPU; 64 = ImageNet stem)."""
    torch.manual_seed(0)
    check_network(name, NETWORKS[name].default_input_shape)
    model = build_network(name, shape, 7).eval()
    x = torch.randn(2, *shape)
    with torch.no_grad():
        logits, feats = model(x), model.features(x)
    assert logits.shape == (2, 7)
    assert isinstance(model.classifier, nn.Linear)
    assert feats.shape == (2, model.num_features) == (2, model.classifier.in_features)
    assert model.classifier.out_features == model.num_classes == 7
    torch.testing.assert_close(model.classifier(feats), logits)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name,shape", [("resnet26_shake", (3, 16, 16)), ("tcdcn", (1, 60, 60)),
                                        ("resnet18", (3, 32, 32))])
def test_train_mode_backward_reaches_every_parameter(name, shape):
    torch.manual_seed(0)
    model = build_network(name, shape, 10).train()
    out = model(torch.randn(2, *shape))
    out.square().mean().backward()
    assert torch.isfinite(out).all()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_no_inplace_activations():
    for name in NEW:
        model = build_network(name, NETWORKS[name].default_input_shape, 10)
        for m in model.modules():
            assert not getattr(m, "inplace", False), (name, m)


@pytest.mark.parametrize("name,shape", [("resnet26_shake", (3, 4, 4)), ("tcdcn", (1, 43, 60)),
                                        ("tcdcn", (60, 60)), ("resnet18", (3, 7, 7))])
def test_rejects_bad_shapes(name, shape):
    with pytest.raises(ValueError) as exc:
        build_network(name, shape, 10)
    assert "\n" not in str(exc.value) and name in str(exc.value)


# ---------------------------------------------------------- parameter counts
def _shake_hand_count(cin: int, width: int, n: int, k: int) -> int:
    total = 9 * cin * 16 + 2 * 16                      # stem conv + BN
    c = 16
    for w in (width, 2 * width, 4 * width):
        for j in range(n):
            total += 2 * (9 * c * w + 9 * w * w + 4 * w)  # two branches: 2 convs + 2 BNs
            if c != w:  # first block of each stage (width change, stride 2 after stage 1)
                total += c * w + 2 * w                     # 2 x conv1x1(c, w/2) + BN(w)
            c = w
    return total + 4 * width * k + k                   # Linear


def test_resnet26_shake_parameter_count():
    n = count_parameters(build_network("resnet26_shake", (3, 32, 32), 10))
    assert n == _shake_hand_count(3, 96, 4, 10) == 26_192_922
    assert abs(n - 26.2e6) / 26.2e6 < 0.01             # Gastaldi 2017, Table 1: 26.2M
    n100 = count_parameters(build_network("resnet26_shake", (3, 32, 32), 100))
    assert n100 == _shake_hand_count(3, 96, 4, 100)
    small = ShakeShakeResNet(in_channels=1, num_classes=3, depth=8, width=4)
    assert count_parameters(small) == _shake_hand_count(1, 4, 1, 3)


def test_resnet26_shake_structure():
    model = build_network("resnet26_shake", (3, 32, 32), 10)
    blocks = [m for m in model.modules() if isinstance(m, ShakeBlock)]
    assert len(blocks) == 12
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) == 1 + 12 * 4                    # 26 layers = 1 + 12 x 2 (depth) + fc
    assert [b.branch1[1].out_channels for b in blocks[::4]] == [96, 192, 384]
    assert model.num_features == 384


def _tcdcn_hand_count(cin: int, k: int, flat: int = 720) -> int:
    convs = [(5, cin, 20), (5, 20, 48), (3, 48, 64), (3, 64, 80)]
    total = sum(kk * kk * i * o + o for kk, i, o in convs)
    return total + (flat * 256 + 256) + (256 * k + k)


def test_tcdcn_parameter_count_and_structure():
    model = build_network("tcdcn", (1, 60, 60), 10)
    assert count_parameters(model) == _tcdcn_hand_count(1, 10) == 285_586
    assert model.fc.in_features == 720 and model.num_features == 256
    assert sum(isinstance(m, nn.Hardtanh) for m in model.modules()) == 4
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 3
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.ReLU)) for m in model.modules())
    # features are the un-activated FC output (can leave [-1, 1])
    model.eval()
    with torch.no_grad():
        model.fc.weight.mul_(50)
        f = model.features(torch.randn(4, 1, 60, 60))
    assert f.abs().max() > 1
    # other sizes: 64x64 -> 60 -> 30 -> 26 -> 13 -> 11 -> 5 -> 3 (still 720); 44 -> 1x1
    assert count_parameters(build_network("tcdcn", (1, 64, 64), 10)) == 285_586
    small = build_network("tcdcn", (3, 44, 44), 4)
    assert count_parameters(small) == _tcdcn_hand_count(3, 4, flat=80)
    assert small(torch.randn(2, 3, 44, 44)).shape == (2, 4)


@pytest.mark.parametrize("num_classes", [1000, 10])
def test_resnet18_count_matches_torchvision(num_classes):
    torchvision = pytest.importorskip("torchvision")
    ref = count_parameters(torchvision.models.resnet18(weights=None, num_classes=num_classes))
    ours = build_network("resnet18", (3, 224, 224), num_classes)
    assert count_parameters(ours) == ref
    if num_classes == 1000:
        assert ref == 11_689_512
    # CIFAR stem: 3x3 instead of 7x7 stem weights
    small = build_network("resnet18", (3, 32, 32), num_classes)
    assert count_parameters(small) == ref - (49 - 9) * 3 * 64


def test_resnet18_stem_choice():
    for shape, small in [((3, 32, 32), True), ((1, 28, 28), True), ((3, 63, 96), True),
                         ((3, 64, 64), False), ((3, 224, 224), False)]:
        model = build_network("resnet18", shape, 10)
        assert model.small_stem is small
        assert model.conv1.kernel_size == ((3, 3) if small else (7, 7))
        assert model.conv1.stride == ((1, 1) if small else (2, 2))
        assert any(isinstance(m, nn.MaxPool2d) for m in model.modules()) is not small


def test_resnet18_equals_torchvision_with_its_weights():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    ref = torchvision.models.resnet18(weights=None, num_classes=5).eval()
    sd = {("classifier." + k[3:] if k.startswith("fc.") else k): v
          for k, v in ref.state_dict().items()}
    ours = ResNet18(in_channels=3, num_classes=5, small_stem=False).eval()
    ours.load_state_dict(sd, strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x))


# ------------------------------------------------------------- shake-shake
def _hooked(block: ShakeBlock):
    """Record the two branch outputs and their gradients."""
    rec: dict[str, torch.Tensor] = {}

    def hook(key):
        def fwd(_m, _inp, out):
            rec[key] = out.detach()
            if out.requires_grad:
                out.register_hook(lambda g: rec.__setitem__("g" + key, g.detach()))
        return fwd

    handles = [block.branch1.register_forward_hook(hook("a")),
               block.branch2.register_forward_hook(hook("b"))]
    return rec, handles


def _per_sample(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1)


def test_shake_eval_is_branch_average_and_deterministic():
    torch.manual_seed(0)
    model = build_network("resnet26_shake", (3, 32, 32), 10).eval()
    block = model.stage2[0]                            # a block with a projection shortcut
    rec, handles = _hooked(block)
    inp = {}
    h_in = block.register_forward_pre_hook(lambda _m, a: inp.__setitem__("x", a[0].detach()))
    x = torch.randn(2, 3, 8, 8)                        # small input: CPU time
    with torch.no_grad():
        out1 = model(x)
        y = block(inp["x"])
        expected = block.shortcut(inp["x"]) + 0.5 * (rec["a"] + rec["b"])
        out2 = model(x)
    for h in handles + [h_in]:
        h.remove()
    torch.testing.assert_close(y, expected)
    torch.testing.assert_close(out1, out2, rtol=0, atol=0)


def test_shake_train_forwards_differ():
    torch.manual_seed(0)
    model = ShakeShakeResNet(in_channels=3, num_classes=4, depth=8, width=4).train()
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        o1, o2 = model(x), model(x)
    assert not torch.allclose(o1, o2)
    # reproducible under the same seed (functional_call below relies on it)
    torch.manual_seed(1)
    o3 = model(x)
    torch.manual_seed(1)
    torch.testing.assert_close(model(x), o3, rtol=0, atol=0)


def test_shake_backward_uses_independent_mix():
    """Forward mixes with alpha, backward with an independent beta (per sample)."""
    torch.manual_seed(0)
    block = ShakeBlock(6, 6, 1).train()                # identity shortcut: y = x + mix
    rec, handles = _hooked(block)
    x = torch.randn(8, 6, 5, 5)
    y = block(x)
    g = torch.randn_like(y)
    y.backward(g)
    for h in handles:
        h.remove()
    a, b, ga, gb = (_per_sample(rec[k]) for k in ("a", "b", "ga", "gb"))
    mix, gflat = _per_sample(y.detach() - x), _per_sample(g)
    # forward coefficient alpha, recovered from y = x + alpha a + (1 - alpha) b
    alpha = ((mix - b) * (a - b)).sum(1) / (a - b).square().sum(1)
    torch.testing.assert_close(mix, alpha[:, None] * a + (1 - alpha[:, None]) * b)
    # backward coefficient beta, recovered from the branch-output gradients
    beta = (ga * gflat).sum(1) / gflat.square().sum(1)
    torch.testing.assert_close(ga, beta[:, None] * gflat)
    torch.testing.assert_close(gb, (1 - beta[:, None]) * gflat)
    assert ((alpha > 0) & (alpha < 1) & (beta > 0) & (beta < 1)).all()
    assert alpha.unique().numel() == 8 and beta.unique().numel() == 8  # per sample
    assert (alpha - beta).abs().min() > 1e-4                             # not the forward mix
    # hence a branch's parameter gradient is not the forward-alpha scaled one
    conv = block.branch1[1]
    ref_alpha = torch.autograd.grad(block.branch1(x), conv.weight, alpha.view(-1, 1, 1, 1) * g)[0]
    ref_beta = torch.autograd.grad(block.branch1(x), conv.weight, beta.view(-1, 1, 1, 1) * g)[0]
    assert not torch.allclose(conv.weight.grad, ref_alpha, rtol=1e-2, atol=1e-6)
    torch.testing.assert_close(conv.weight.grad, ref_beta)


def test_shake_mix_function_with_equal_coefficients_is_exact_gradient():
    torch.manual_seed(0)
    a = torch.randn(3, 2, 2, 2, dtype=torch.double, requires_grad=True)
    b = torch.randn(3, 2, 2, 2, dtype=torch.double, requires_grad=True)
    alpha = torch.rand(3, 1, 1, 1, dtype=torch.double)
    assert torch.autograd.gradcheck(lambda a, b: ShakeShakeMix.apply(a, b, alpha, alpha), (a, b))
    # second order works (backward is built from differentiable ops)
    beta = torch.rand(3, 1, 1, 1, dtype=torch.double)
    out = ShakeShakeMix.apply(a * a, b, alpha, beta).sum()
    (ga,) = torch.autograd.grad(out, a, create_graph=True)
    torch.testing.assert_close(ga, 2 * a * beta)
    (gga,) = torch.autograd.grad(ga.sum(), a)
    torch.testing.assert_close(gga, 2 * beta.expand_as(a))
    # forward mode (torch.func.jvp) differentiates the forward map (alpha)
    ta, tb = torch.randn_like(a), torch.randn_like(b)
    _, t = jvp(lambda a, b: ShakeShakeMix.apply(a, b, alpha, beta), (a.detach(), b.detach()),
               (ta, tb))
    torch.testing.assert_close(t, alpha * ta + (1 - alpha) * tb)


# --------------------------------------------------------------- torch.func
@pytest.mark.parametrize("name,shape", [("resnet26_shake", (3, 8, 8)), ("tcdcn", (1, 60, 60)),
                                        ("resnet18", (3, 16, 16)), ("resnet18", (3, 64, 64))])
def test_functional_call(name, shape):
    torch.manual_seed(0)
    model = build_network(name, shape, 4).eval()
    params = {k: v.detach().clone() for k, v in model.named_parameters()}
    x = torch.randn(2, *shape)
    with torch.no_grad():
        torch.testing.assert_close(functional_call(model, params, (x,)), model(x))
        shifted = {k: v + 0.05 for k, v in params.items()}
        assert not torch.allclose(functional_call(model, shifted, (x,)), model(x))
    # gradients w.r.t. the supplied parameters flow through functional_call
    p = {k: v.requires_grad_() for k, v in params.items()}
    out = functional_call(model, p, (x,))
    grads = torch.autograd.grad(out.square().sum(), list(p.values()), allow_unused=False)
    assert all(torch.isfinite(g).all() for g in grads)


def test_functional_call_shake_train_mode_and_second_order():
    """Train-mode shake-shake through functional_call, with a virtual SGD step."""
    torch.manual_seed(0)
    model = ShakeShakeResNet(in_channels=3, num_classes=3, depth=8, width=4).train()
    params = dict(model.named_parameters())
    x, y = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 0])
    torch.manual_seed(5)
    out_f = functional_call(model, params, (x,))
    torch.manual_seed(5)
    torch.testing.assert_close(out_f, model(x))
    loss = nn.functional.cross_entropy(out_f, y)
    grads = torch.autograd.grad(loss, list(params.values()), create_graph=True)
    new = {k: v - 0.1 * g for (k, v), g in zip(params.items(), grads)}
    nn.functional.cross_entropy(functional_call(model, new, (x,)), y).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_tcdcn_regression_output_and_jvp():
    torch.manual_seed(0)
    model = TCDCN(in_channels=1, num_classes=10).double()
    params = {k: v.detach().clone() for k, v in model.named_parameters()}
    x = torch.randn(2, 1, 60, 60, dtype=torch.double)
    tangent = {k: 1e-2 * torch.randn_like(v) for k, v in params.items()}

    def f(p):
        return functional_call(model, p, (x,))

    out, dout = jvp(f, (params,), (tangent,))
    assert out.shape == (2, 10)
    eps = 1e-6
    fd = (f({k: params[k] + eps * tangent[k] for k in params})
          - f({k: params[k] - eps * tangent[k] for k in params})) / (2 * eps)
    torch.testing.assert_close(dout, fd, rtol=1e-3, atol=1e-6)
