"""The meta-gradient primitive (algorithms.meta.functional) against brute-force autograd.

Every reference here is computed without the primitive: per-sample gradients by looping
``torch.autograd.grad`` over each sample's loss, then an explicit inner product with v.
"""
import copy

import pytest
import torch
from torch import nn

from algorithms import losses
from algorithms.meta import directional_derivatives, loss_gradient
from algorithms.networks import build_network


def _data(shape, n, classes, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((n, *shape), generator=g, dtype=dtype)
    t = torch.softmax(2.0 * torch.randn(n, classes, generator=g, dtype=dtype), dim=1)  # soft targets
    return x, t


def _model(name, shape, classes, seed):
    torch.manual_seed(seed)
    return build_network(name, shape, classes).double()


def _random_direction(model, seed):
    g = torch.Generator().manual_seed(seed)
    return {n: torch.randn(p.shape, generator=g, dtype=p.dtype) for n, p in model.named_parameters()}


def _named_params(model):
    return [n for n, _ in model.named_parameters()]


def brute_force_directional(model, x, t, v, per_sample_forward=True):
    """<grad L_j, v> by one autograd.grad per sample.

    ``per_sample_forward``: forward sample j alone (BN-free models); else forward the whole
    batch (BN in train mode: L_j depends on the batch through its statistics) and take L_j.
    """
    names = _named_params(model)
    params = [p for _, p in model.named_parameters()]
    out = []
    for j in range(x.shape[0]):
        if per_sample_forward:
            lj = losses.soft_cross_entropy(model(x[j:j + 1]), t[j:j + 1])[0]
        else:
            lj = losses.soft_cross_entropy(model(x), t)[j]
        grads = torch.autograd.grad(lj, params)
        out.append(sum((g * v[n]).sum() for n, g in zip(names, grads)))
    return torch.stack(out).detach()


def _rel(a, b):
    return float((a - b).norm() / b.norm())


CASES = [("mlp", (5,), 4), ("cnn_small", (1, 8, 8), 10)]


@pytest.mark.parametrize("net,shape,classes", CASES)
def test_jvp_equals_brute_force_per_sample_gradients(net, shape, classes):
    model = _model(net, shape, classes, 0)
    x, t = _data(shape, 6, classes, 1)
    v = _random_direction(model, 2)
    d = directional_derivatives(model, losses.soft_cross_entropy, x, t, v, method="jvp")
    ref = brute_force_directional(model, x, t, v)
    assert d.shape == (6,)
    assert _rel(d, ref) < 1e-5
    # and with v = grad G (the way Meta-Semi uses it): mixed signs, still exact
    xg, tg = _data(shape, 8, classes, 3)
    g = loss_gradient(model, losses.soft_cross_entropy, xg, tg)
    d = directional_derivatives(model, losses.soft_cross_entropy, x, t, g, method="jvp")
    assert _rel(d, brute_force_directional(model, x, t, g)) < 1e-5


def test_jvp_float32_close_to_float64_reference():
    model = _model("cnn_small", (1, 8, 8), 10, 4)
    x, t = _data((1, 8, 8), 6, 10, 5)
    v = _random_direction(model, 6)
    ref = brute_force_directional(model, x, t, v)
    m32 = copy.deepcopy(model).float()
    d = directional_derivatives(m32, losses.soft_cross_entropy, x.float(), t.float(),
                                {n: a.float() for n, a in v.items()}, method="jvp")
    assert d.dtype == torch.float32
    assert _rel(d.double(), ref) < 1e-4


def _smooth_net(kind, classes):
    """Tanh networks: infinitely differentiable, so the central difference is O(eps^2) everywhere
    (the registered networks use LeakyReLU, whose kinks make the error O(eps) once a
    perturbation crosses one)."""
    torch.manual_seed(0)
    if kind == "mlp":
        return nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, classes)).double()
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 64, classes)).double()


@pytest.mark.parametrize("kind,shape,classes", [("mlp", (5,), 4), ("cnn", (1, 8, 8), 10)])
def test_finite_difference_agrees_and_error_falls_quadratically(kind, shape, classes):
    model = _smooth_net(kind, classes)
    x, t = _data(shape, 6, classes, 8)
    v = _random_direction(model, 9)
    ref = brute_force_directional(model, x, t, v)
    d = directional_derivatives(model, losses.soft_cross_entropy, x, t, v, method="fd")
    assert _rel(d, ref) < 1e-3
    errs = [_rel(directional_derivatives(model, losses.soft_cross_entropy, x, t, v, method="fd", eps_scale=s), ref)
            for s in (1e-1, 1e-2, 1e-3)]
    # central difference: O(eps^2), so a 10x smaller eps gives ~100x smaller error (allow 30x)
    assert errs[1] < errs[0] / 30, errs
    assert errs[2] < errs[1] / 30, errs


@pytest.mark.parametrize("net,shape,classes", CASES)
def test_finite_difference_on_registered_networks(net, shape, classes):
    """LeakyReLU networks: close to the exact value, same signs where the value is not tiny,
    and exact in the limit of small eps (float64)."""
    model = _model(net, shape, classes, 7)
    x, t = _data(shape, 6, classes, 8)
    v = loss_gradient(model, losses.soft_cross_entropy, *_data(shape, 8, classes, 3))
    ref = brute_force_directional(model, x, t, v)
    d = directional_derivatives(model, losses.soft_cross_entropy, x, t, v, method="fd")
    assert _rel(d, ref) < 2e-2
    clear = ref.abs() > 0.05 * ref.abs().max()
    assert torch.equal(torch.sign(d[clear]), torch.sign(ref[clear]))
    tiny = directional_derivatives(model, losses.soft_cross_entropy, x, t, v, method="fd", eps_scale=1e-6)
    assert _rel(tiny, ref) < 1e-5


def test_finite_difference_is_central_not_forward():
    """A forward difference (L(theta+eps v) - L(theta)) / eps has O(eps) error; check we beat it by far."""
    model = _smooth_net("mlp", 4)
    x, t = _data((5,), 10, 4, 11)
    v = _random_direction(model, 12)
    ref = brute_force_directional(model, x, t, v)
    norm = torch.sqrt(sum((a ** 2).sum() for a in v.values()))
    eps = float(0.01 / norm)
    with torch.no_grad():
        base = losses.soft_cross_entropy(model(x), t)
        pert = copy.deepcopy(model)
        for n, p in pert.named_parameters():
            p.add_(eps * v[n])
        forward = (losses.soft_cross_entropy(pert(x), t) - base) / eps
    d = directional_derivatives(model, losses.soft_cross_entropy, x, t, v, method="fd")
    assert _rel(d, ref) < _rel(forward, ref) / 10


def test_fd_zero_direction_gives_zeros():
    model = _model("mlp", (5,), 4, 13)
    x, t = _data((5,), 6, 4, 14)
    v = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for method in ("jvp", "fd"):
        d = directional_derivatives(model, losses.soft_cross_entropy, x, t, v, method=method)
        assert d.shape == (6,) and torch.all(d == 0)


def test_unknown_method_rejected():
    model = _model("mlp", (5,), 4, 13)
    x, t = _data((5,), 6, 4, 14)
    with pytest.raises(ValueError):
        directional_derivatives(model, losses.soft_cross_entropy, x, t, _random_direction(model, 0), method="nope")


@pytest.mark.parametrize("net,shape,classes", CASES)
def test_loss_gradient_equals_autograd_of_mean_loss(net, shape, classes):
    model = _model(net, shape, classes, 15)
    x, t = _data(shape, 9, classes, 16)
    g = loss_gradient(model, losses.soft_cross_entropy, x, t)
    ref = torch.autograd.grad(losses.soft_cross_entropy(model(x), t).mean(), list(model.parameters()))
    assert list(g) == _named_params(model)
    for (n, a), b in zip(g.items(), ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=n)
    assert all(p.grad is None for p in model.parameters())


def test_loss_gradient_of_hand_computed_linear_model():
    """Linear softmax regression: grad_W mean CE = mean_i (p_i - t_i) x_i^T, grad_b = mean_i (p_i - t_i)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4)).double()
    x, t = _data((3,), 7, 4, 17)
    g = loss_gradient(model, losses.soft_cross_entropy, x, t)
    with torch.no_grad():
        p = torch.softmax(x @ model[0].weight.T + model[0].bias, dim=1)
        gw = (p - t).T @ x / x.shape[0]
        gb = (p - t).mean(0)
    torch.testing.assert_close(g["0.weight"], gw)
    torch.testing.assert_close(g["0.bias"], gb)


def _bn_state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _bn_buffers(model):
    return {n: b for n, b in model.named_buffers()}


def test_batchnorm_statistics_untouched_and_no_grad_populated():
    model = _model("cnn_small_bn", (1, 8, 8), 10, 18)
    model.train()
    # give the running statistics non-trivial values first
    with torch.no_grad():
        model(_data((1, 8, 8), 16, 10, 19)[0] * 3 + 1)
    bufs = _bn_buffers(model)
    assert any("running_mean" in n for n in bufs) and any("num_batches_tracked" in n for n in bufs)
    before = _bn_state(model)
    x, t = _data((1, 8, 8), 6, 10, 20)
    v = _random_direction(model, 21)
    for mode in ("train", "eval"):
        loss_gradient(model, losses.soft_cross_entropy, x, t, mode=mode)
        for method in ("jvp", "fd"):
            directional_derivatives(model, losses.soft_cross_entropy, x, t, v, mode=mode, method=method)
    after = _bn_state(model)
    for k in before:
        assert torch.equal(before[k], after[k]), k
    assert model.training, "the model's train/eval mode must be restored"
    assert all(p.grad is None for p in model.parameters())
    model.eval()
    directional_derivatives(model, losses.soft_cross_entropy, x, t, v, mode="train")
    assert not model.training


def test_batchnorm_train_mode_jvp_equals_brute_force_with_batch_statistics():
    model = _model("cnn_small_bn", (1, 8, 8), 10, 22)
    model.train()
    with torch.no_grad():
        model(_data((1, 8, 8), 16, 10, 23)[0] * 3 + 1)  # running stats far from the batch's
    x, t = _data((1, 8, 8), 6, 10, 24)
    v = _random_direction(model, 25)
    ref_model = copy.deepcopy(model).train()  # its stats updates are irrelevant
    ref = brute_force_directional(ref_model, x, t, v, per_sample_forward=False)
    d = directional_derivatives(model, losses.soft_cross_entropy, x, t, v, mode="train", method="jvp")
    assert _rel(d, ref) < 1e-5
    # small eps: LeakyReLU kinks make the default eps only ~1e-2 accurate (see above)
    d_fd = directional_derivatives(model, losses.soft_cross_entropy, x, t, v, mode="train", method="fd", eps_scale=1e-6)
    assert _rel(d_fd, ref) < 1e-5
    # gradient in train mode: batch statistics
    g = loss_gradient(model, losses.soft_cross_entropy, x, t, mode="train")
    gref = torch.autograd.grad(losses.soft_cross_entropy(ref_model(x), t).mean(), list(ref_model.parameters()))
    for (n, a), b in zip(g.items(), gref):
        torch.testing.assert_close(a, b, msg=n)
    # and the eval-mode reference differs (so the test distinguishes the modes)
    eval_ref = brute_force_directional(copy.deepcopy(model).eval(), x, t, v)
    assert _rel(eval_ref, ref) > 1e-3


def test_batchnorm_eval_mode_jvp_equals_brute_force_in_eval_mode():
    model = _model("cnn_small_bn", (1, 8, 8), 10, 26)
    model.train()
    with torch.no_grad():
        model(_data((1, 8, 8), 16, 10, 27)[0] * 3 + 1)
    x, t = _data((1, 8, 8), 6, 10, 28)
    v = _random_direction(model, 29)
    ref_model = copy.deepcopy(model).eval()
    ref = brute_force_directional(ref_model, x, t, v, per_sample_forward=True)
    d = directional_derivatives(model, losses.soft_cross_entropy, x, t, v, mode="eval", method="jvp")
    assert _rel(d, ref) < 1e-5
    d_fd = directional_derivatives(model, losses.soft_cross_entropy, x, t, v, mode="eval", method="fd", eps_scale=1e-6)
    assert _rel(d_fd, ref) < 1e-5
    g = loss_gradient(model, losses.soft_cross_entropy, x, t, mode="eval")
    gref = torch.autograd.grad(losses.soft_cross_entropy(ref_model(x), t).mean(), list(ref_model.parameters()))
    for (n, a), b in zip(g.items(), gref):
        torch.testing.assert_close(a, b, msg=n)
    assert model.training


def test_no_grad_populated_on_plain_model():
    model = _model("cnn_small", (1, 8, 8), 10, 30)
    x, t = _data((1, 8, 8), 6, 10, 31)
    v = loss_gradient(model, losses.soft_cross_entropy, x, t)
    for method in ("jvp", "fd"):
        directional_derivatives(model, losses.soft_cross_entropy, x, t, v, method=method)
    assert all(p.grad is None for p in model.parameters())
    # and a later ordinary backward is not polluted by anything the primitive left behind
    losses.soft_cross_entropy(model(x), t).mean().backward()
    ref = torch.autograd.grad(losses.soft_cross_entropy(model(x), t).mean(), list(model.parameters()))
    for p, r in zip(model.parameters(), ref):
        torch.testing.assert_close(p.grad, r)


def test_finite_differences_use_one_dropout_mask():
    """Both perturbed forwards must draw the same dropout mask; otherwise the difference is
    dominated by mask noise / eps. Reference: jvp under the same seed (one forward, one mask)."""
    from torch import nn

    from algorithms import losses
    from algorithms.meta import directional_derivatives

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 3)).double()
    x = torch.randn(8, 5, dtype=torch.float64)
    y = torch.softmax(torch.randn(8, 3, dtype=torch.float64), 1)
    v = {n: torch.randn_like(p) for n, p in model.named_parameters()}
    torch.manual_seed(7)
    fd = directional_derivatives(model, losses.soft_cross_entropy, x, y, v, "train", "fd", eps_scale=1e-4)
    torch.manual_seed(7)
    exact = directional_derivatives(model, losses.soft_cross_entropy, x, y, v, "train", "jvp")
    torch.testing.assert_close(fd, exact, rtol=1e-5, atol=1e-7)
