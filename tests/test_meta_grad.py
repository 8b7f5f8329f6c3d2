"""The meta_grad rule (Meta-Gradient SSL, paper 003) against independent computations.

References are written here without the rule's helpers: the first-order label gradient by a
double backward of <grad L_l, grad sum_i l_i(y)> w.r.t. y; the exact Eq. 5-7 gradient by a
double backward through a virtual SGD step written with plain tensors; the official code's
finite difference by perturbing the weights by hand.
"""
import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from algorithms import Comm, StepInputs, TrainContext, get_algorithm
from algorithms import losses
from algorithms.networks import build_network
from algorithms.meta import clip_to_simplex
from algorithms.rules.meta_grad import cross_mixup, sample_betas
from tests.gloo import assert_workers_equal_one, run_workers, train_runs

C = 4


def _tanh_mlp(seed, d=5, h=7):
    """Smooth (tanh) so finite differences converge at their textbook rate."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, h), nn.Tanh(), nn.Linear(h, C)).double()


def _data(seed, b_l=6, b_u=8, d=5):
    g = torch.Generator().manual_seed(seed)
    x_l = torch.randn(b_l, d, generator=g, dtype=torch.float64)
    y_l = torch.nn.functional.one_hot(torch.randint(0, C, (b_l,), generator=g), C).double()
    x_u = torch.randn(b_u, d, generator=g, dtype=torch.float64)
    y_u = torch.softmax(2 * torch.randn(b_u, C, generator=g, dtype=torch.float64), dim=1)
    mask = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0], dtype=torch.float64)[:b_u]
    return x_l, y_l, x_u, y_u, mask


def _rule(model, base="pseudo_label", **hp):
    cls = get_algorithm(f"{base}+meta_grad")
    algo = cls(model, cls.Hparams(**hp), TrainContext(num_classes=C, total_steps=100))
    return algo.rule


DISTANCES = {"mse": losses.softmax_squared_error, "base": losses.soft_cross_entropy}  # pseudo_label's d = CE


def brute_first_order(model, x_l, y_l, x_u, y_u, mask, dist, alpha):
    """-alpha d/dy_i <grad L_l, grad sum_j l_j(y_j)> by double backward. -> [b_u, C]"""
    params = list(model.parameters())
    v = torch.autograd.grad(losses.soft_cross_entropy(model(x_l), y_l).mean(), params)
    y = y_u.clone().requires_grad_(True)
    gu = torch.autograd.grad((dist(model(x_u), y) * mask).sum(), params, create_graph=True)
    inner = sum((a * b).sum() for a, b in zip(gu, v))
    (gy,) = torch.autograd.grad(inner, y)
    return -alpha * gy


def brute_exact(model, x_l, y_l, x_u, y_u, mask, dist, alpha):
    """B_u * d/dy L_l(theta - alpha grad_theta mean_i l_i(theta, y)) (Alg. 1, Eq. 5). -> [b_u, C]"""
    names = [n for n, _ in model.named_parameters()]
    theta = [p.detach().clone().requires_grad_(True) for p in model.parameters()]
    y = y_u.clone().requires_grad_(True)
    loss_u = (dist(functional_call(model, dict(zip(names, theta)), (x_u,)), y) * mask).mean()
    grads = torch.autograd.grad(loss_u, theta, create_graph=True)
    theta1 = [t - alpha * g for t, g in zip(theta, grads)]
    loss_l = losses.soft_cross_entropy(functional_call(model, dict(zip(names, theta1)), (x_l,)), y_l).mean()
    (gy,) = torch.autograd.grad(loss_l, y)
    return gy * x_u.shape[0]


def _rel(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("loss", ["mse", "base"])
def test_jvp_label_gradient_equals_double_backward(loss):
    model = _tanh_mlp(0)
    x_l, y_l, x_u, y_u, mask = _data(1)
    rule = _rule(model, meta_grad_loss=loss, meta_method="jvp", meta_bn="train")
    got = rule.label_gradient(x_l, y_l, x_u, y_u, mask, alpha=0.3)
    ref = brute_first_order(model, x_l, y_l, x_u, y_u, mask, DISTANCES[loss], 0.3)
    assert ref.abs().max() > 1e-4  # not vacuous
    assert _rel(got, ref) < 1e-5
    assert got[mask == 0].abs().max() == 0  # masked samples carry no unlabeled loss, hence no meta-gradient
    assert model[0].weight.grad is None


@pytest.mark.parametrize("loss", ["mse", "base"])
def test_central_difference_error_falls_as_eps_squared(loss):
    model = _tanh_mlp(2)
    x_l, y_l, x_u, y_u, mask = _data(3)
    ref = brute_first_order(model, x_l, y_l, x_u, y_u, mask, DISTANCES[loss], 0.5)
    scales = [1e-1, 3e-2, 1e-2]
    errs = []
    for s in scales:
        rule = _rule(model, meta_grad_loss=loss, meta_method="fd", meta_grad_eps_scale=s)
        errs.append(_rel(rule.label_gradient(x_l, y_l, x_u, y_u, mask, alpha=0.5), ref))
    slope = np.polyfit(np.log(scales), np.log(errs), 1)[0]
    assert 1.7 < slope < 2.3, (errs, slope)
    assert errs[-1] < 1e-3


@pytest.mark.parametrize("loss", ["mse", "base"])
def test_exact_is_the_virtual_step_gradient_and_tends_to_first_order(loss):
    model = _tanh_mlp(4)
    x_l, y_l, x_u, y_u, mask = _data(5)
    dist = DISTANCES[loss]
    rule = _rule(model, meta_grad_loss=loss, meta_method="exact", meta_bn="train")
    # (a) the rule's exact path equals the hand-written double backward through the virtual step
    got = rule.label_gradient(x_l, y_l, x_u, y_u, mask, alpha=0.5)
    ref = brute_exact(model, x_l, y_l, x_u, y_u, mask, dist, 0.5)
    assert _rel(got, ref) < 1e-9
    # ... and it is not the first-order quantity at this alpha (so (a) checks the second order)
    assert _rel(ref, brute_first_order(model, x_l, y_l, x_u, y_u, mask, dist, 0.5)) > 1e-3
    # (b) exact = first order + O(alpha^2): the relative gap falls linearly with alpha
    alphas = [1e-1, 1e-2, 1e-3]
    gaps = [_rel(brute_exact(model, x_l, y_l, x_u, y_u, mask, dist, a),
                 brute_first_order(model, x_l, y_l, x_u, y_u, mask, dist, a)) for a in alphas]
    slope = np.polyfit(np.log(alphas), np.log(gaps), 1)[0]
    assert 0.85 < slope < 1.15, (gaps, slope)
    # (c) fd (first order, small eps) approaches the exact gradient as alpha -> 0
    fd = _rule(model, meta_grad_loss=loss, meta_method="fd", meta_grad_eps_scale=1e-4)
    a = 1e-3
    assert _rel(fd.label_gradient(x_l, y_l, x_u, y_u, mask, alpha=a), brute_exact(model, x_l, y_l, x_u, y_u, mask, dist, a)) < 1e-2


def test_eps_divisor_is_twice_central_and_central_is_the_official_update():
    model = _tanh_mlp(6)
    x_l, y_l, x_u, y_u, _ = _data(7)
    mask = torch.ones(x_u.shape[0], dtype=torch.float64)
    alpha = 0.2
    central = _rule(model, meta_method="fd").label_gradient(x_l, y_l, x_u, y_u, mask, alpha)
    eps_div = _rule(model, meta_method="fd", meta_grad_fd_divisor="eps").label_gradient(x_l, y_l, x_u, y_u, mask, alpha)
    torch.testing.assert_close(eps_div, 2 * central, rtol=1e-12, atol=0)
    # official code (OFFICIAL_CODE_NOTES.md): (softmax f(theta + eps v) - softmax f(theta - eps v)) / eps,
    # eps = 0.01 / ||v||, weights perturbed by hand. With MSE, our central g = alpha * that.
    params = list(model.parameters())
    v = torch.autograd.grad(losses.hard_cross_entropy(model(x_l), y_l.argmax(1)).mean(), params)
    eps = 0.01 / math.sqrt(sum(float((t ** 2).sum()) for t in v))
    with torch.no_grad():
        for p, t in zip(params, v):
            p.add_(eps * t)
        p_plus = torch.softmax(model(x_u), 1)
        for p, t in zip(params, v):
            p.sub_(2 * eps * t)
        p_minus = torch.softmax(model(x_u), 1)
        for p, t in zip(params, v):
            p.add_(eps * t)
    official = (p_plus - p_minus) / eps
    torch.testing.assert_close(central, alpha * official, rtol=1e-9, atol=1e-12)


def test_clip_to_simplex():
    y = torch.tensor([[0.5, -0.2, 0.7, 0.0],     # one negative
                      [-1.0, -0.5, -0.1, -2.0],  # nothing left: uniform
                      [0.1, 0.2, 0.3, 0.4],      # already a distribution: unchanged
                      [2.0, 0.0, 0.0, 2.0]])     # positive, sum 4
    want = torch.tensor([[0.5 / 1.2, 0.0, 0.7 / 1.2, 0.0],
                         [0.25, 0.25, 0.25, 0.25],
                         [0.1, 0.2, 0.3, 0.4],
                         [0.5, 0.0, 0.0, 0.5]])
    torch.testing.assert_close(clip_to_simplex(y), want)


def test_cross_mixup_pairs_i_with_i_and_lambda_is_beta():
    g = torch.Generator().manual_seed(0)
    x_l, x_u = torch.randn(3, 2, 2, generator=g), torch.randn(5, 2, 2, generator=g)
    y_l = torch.eye(4)[[0, 2, 3]]
    y_u = torch.softmax(torch.randn(5, 4, generator=g), 1)
    lam = torch.as_tensor(sample_betas(0.5, 5, torch.Generator().manual_seed(1)))
    x_in, y_in = cross_mixup(x_l, y_l, x_u, y_u, lam)
    assert x_in.shape == (5, 2, 2) and y_in.shape == (5, 4)
    for i in range(5):  # labeled batch cycled: i mod 3
        li = float(lam[i])
        torch.testing.assert_close(x_in[i], li * x_l[i % 3] + (1 - li) * x_u[i])
        torch.testing.assert_close(y_in[i], li * y_l[i % 3] + (1 - li) * y_u[i])
    assert torch.allclose(y_in.sum(1), torch.ones(5))
    # the same generator state gives the same draws (every worker mixes alike); a new draw differs
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    a = sample_betas(0.5, 7, g1)
    assert np.array_equal(a, sample_betas(0.5, 7, g2)) and not np.array_equal(a, sample_betas(0.5, 7, g1))
    # i.i.d. Beta(gamma, gamma): mean 1/2, variance 1 / (4 (2 gamma + 1))
    for gamma in (0.3, 1.0):
        draws = sample_betas(gamma, 200_000, torch.Generator().manual_seed(3))
        assert abs(draws.mean() - 0.5) < 0.005
        assert abs(draws.var() - 1 / (4 * (2 * gamma + 1))) < 0.003


@pytest.mark.parametrize("mixup_mask", ["base", "none"])
def test_rule_mixed_batch_uses_updated_pseudo_labels_and_the_base_mask(mixup_mask):
    """Eq. 12 with y_hat; with ``mixup_mask base`` a sample the base masks (no meta step for it)
    does not enter the MixUp: lam_i' = 1 - m_i (1 - lam_i), its pair is the labeled sample."""
    model = _tanh_mlp(8)
    x_l, y_l, x_u, y_u, mask = _data(9, b_l=4, b_u=8)
    rule = _rule(model, mixup_gamma=0.7, mixup_mask=mixup_mask)
    s = StepInputs(x_l, y_l.argmax(1), x_u, y_u, mask, 1.0)  # x_u: the student view
    y_hat = torch.softmax(torch.randn(8, C, dtype=torch.float64), 1)
    gen = rule.algo.ctx.generator
    state = gen.get_state()
    raw = torch.as_tensor(sample_betas(0.7, 8, gen))
    gen.set_state(state)
    x_in, y_in, lam = rule.mixed_batch(s, y_l, y_hat)
    assert raw.min() > 0 and raw.max() < 1 and raw.std() > 0  # per-sample draws
    expected = 1 - mask * (1 - raw) if mixup_mask == "base" else raw
    torch.testing.assert_close(lam, expected)
    lam = lam.view(-1, 1)
    idx = torch.arange(8) % 4
    torch.testing.assert_close(x_in, lam * x_l[idx] + (1 - lam) * x_u)
    torch.testing.assert_close(y_in, lam * y_l[idx] + (1 - lam) * y_hat)
    masked = mask == 0
    assert masked.any()
    if mixup_mask == "base":  # the masked pseudo-labels are not in any mixed target
        torch.testing.assert_close(x_in[masked], x_l[idx][masked])
        torch.testing.assert_close(y_in[masked], y_l[idx][masked])
    else:
        assert not torch.allclose(y_in[masked], y_l[idx][masked])


def test_one_step_is_algorithm_2_with_the_masking_base():
    """003 Alg. 2 written out (Pseudo-Label with a threshold as the base, identity augmentation):
    y_tilde = f(x_u; theta) (Eq. 2), v = grad of the labeled KL, eps = 0.01 / ||v||,
    grad y_i = m_i (f(theta + eps v) - f(theta - eps v))_i / eps (the base's mask m: no meta step for a
    masked sample), y_hat = y_tilde - beta_t grad y with beta_t = alpha_t (the official code's meta lr),
    lam_i ~ Beta(gamma, gamma) with the mask in the MixUp, lam_i' = 1 - m_i (1 - lam_i),
    loss = 1/B sum_i [KL(y_in_i || f(x_in_i)) + m_i ||f(x_u_i) - y_hat_i||^2], one SGD step."""
    from algorithms import Batch, Stepper

    alpha, gamma, tau, b = 0.1, 0.7, 0.3, 6
    model = _tanh_mlp(3)
    cls = get_algorithm("pseudo_label+meta_grad")
    hp = cls.Hparams(threshold=tau, lambda_u=1.0, rampup="none", meta_grad_init="model", mixup_gamma=gamma,
                     meta_method="fd", meta_lr=1.0)
    algo = cls(model, hp, TrainContext(num_classes=C, total_steps=100, generator=torch.Generator().manual_seed(5)))
    g = torch.Generator().manual_seed(4)
    batch = Batch(torch.randn(b, 5, generator=g, dtype=torch.float64), torch.randint(0, C, (b,), generator=g),
                  torch.randn(b, 5, generator=g, dtype=torch.float64))
    lam = torch.as_tensor(sample_betas(gamma, b, torch.Generator().manual_seed(5)))  # the step's only draw
    names = [n for n, _ in model.named_parameters()]
    theta = {n: p.detach().clone() for n, p in model.named_parameters()}
    f = lambda P, x: functional_call(model, P, (x,))  # noqa: E731
    x_l, y_l, x_u = batch.x_l, F.one_hot(batch.y_l, C).double(), batch.x_u
    with torch.no_grad():
        p_u = torch.softmax(f(theta, x_u), 1)
    m = (p_u.max(1).values >= tau).double()
    assert 0 < int(m.sum()) < b
    P = {n: t.clone().requires_grad_(True) for n, t in theta.items()}
    v = torch.autograd.grad(-(y_l * torch.log_softmax(f(P, x_l), 1)).sum(1).mean(), list(P.values()))
    eps = 0.01 / math.sqrt(sum(float((t ** 2).sum()) for t in v))
    with torch.no_grad():
        plus = torch.softmax(f({n: theta[n] + eps * t for n, t in zip(names, v)}, x_u), 1)
        minus = torch.softmax(f({n: theta[n] - eps * t for n, t in zip(names, v)}, x_u), 1)
    raw = p_u - alpha * m[:, None] * (plus - minus) / eps
    y_hat = raw.clamp(min=0) / raw.clamp(min=0).sum(1, keepdim=True)
    lam_m = (1 - m * (1 - lam))[:, None]
    x_in, y_in = lam_m * x_l + (1 - lam_m) * x_u, lam_m * y_l + (1 - lam_m) * y_hat
    P = {n: t.clone().requires_grad_(True) for n, t in theta.items()}
    kl = (torch.special.xlogy(y_in, y_in) - y_in * torch.log_softmax(f(P, x_in), 1)).sum(1)
    cons = m * ((torch.softmax(f(P, x_u), 1) - y_hat) ** 2).sum(1)
    grads = torch.autograd.grad(kl.mean() + cons.mean(), list(P.values()))
    algo.train_step(batch, 0, Stepper(model, torch.optim.SGD(model.parameters(), lr=alpha), None, Comm()))
    for (n, p), gr in zip(model.named_parameters(), grads):
        torch.testing.assert_close(p.detach(), theta[n] - alpha * gr, rtol=1e-9, atol=1e-12, msg=n)


@pytest.mark.parametrize("method", ["fd", "jvp", "exact"])
@pytest.mark.parametrize("bn", ["train", "eval"])
def test_meta_pass_leaves_batchnorm_statistics_alone(method, bn):
    torch.manual_seed(0)
    model = build_network("cnn_small_bn", (1, 8, 8), C)
    model.train()
    g = torch.Generator().manual_seed(1)
    x_l, x_u = torch.randn(6, 1, 8, 8, generator=g), torch.randn(8, 1, 8, 8, generator=g)
    with torch.no_grad():  # non-trivial running statistics
        model(torch.randn(32, 1, 8, 8, generator=g) * 3 + 1)
    before = {k: b.clone() for k, b in model.named_buffers()}
    rule = _rule(model, meta_method=method, meta_bn=bn)
    y_l = torch.eye(C)[torch.randint(0, C, (6,), generator=g)]
    out = rule.label_gradient(x_l, y_l, x_u, torch.softmax(torch.randn(8, C, generator=g), 1), torch.ones(8), 0.1)
    assert torch.isfinite(out).all() and out.abs().max() > 0
    for k, b in model.named_buffers():
        assert torch.equal(b, before[k]), k
    assert model.training and all(p.grad is None for p in model.parameters())


# -- through the engine ------------------------------------------------------------------

def _config(algorithm, workers=1, steps=20, **hp):
    from bench.config import RunConfig

    names = {f.name for f in dataclasses.fields(get_algorithm(algorithm).Hparams)}
    base = {"rampup": "none", "threshold": 0.0, "ema_decay": 0.9}
    hparams = {k: v for k, v in base.items() if k in names}
    hparams.update(hp)
    return RunConfig.from_dict(dict(
        dataset="digits", algorithm=algorithm, network="cnn_small", n_labels=50, steps=steps, eval_every=steps,
        ema_decay=0.9, batch_labeled=16, batch_unlabeled=48, optim={"lr": 0.05}, hparams=hparams, workers=workers))


@pytest.mark.parametrize("base,method", [("pseudo_label", "fd"), ("mean_teacher", "exact")])
def test_trains_through_engine_and_differs_from_base(tmp_path, base, method):
    from bench.config import RunEnv
    from bench.engine import train_run

    env = RunEnv(str(tmp_path))
    ours = train_run(_config(f"{base}+meta_grad", meta_method=method), env, write=False)
    plain = train_run(_config(base), env, write=False)
    assert ours.status == "ok", ours.run_row["error_message"]
    rows = [r for r in ours.eval_rows if "diag_loss" in r]
    assert rows and all(math.isfinite(r["diag_loss"]) for r in rows)
    assert all(r["diag_label_correction"] > 0 for r in rows)
    diff = max(float((ours.model_state[k] - plain.model_state[k]).abs().max()) for k in plain.model_state)
    assert diff > 1e-3


# -- 2 workers == 1 worker ---------------------------------------------------------------------

DP_CASES = {"pl_exact": ("pseudo_label+meta_grad", {"meta_method": "exact"}),
            "mt_fd": ("mean_teacher+meta_grad", {"meta_method": "fd"})}
DP_STEPS = 6


def test_two_workers_equal_one_worker(tmp_path):
    from bench.config import RunEnv
    from bench.engine import train_run

    configs = [(key, _config(algo, 2, DP_STEPS, **hp)) for key, (algo, hp) in DP_CASES.items()]
    parallel, single = run_workers(train_runs, configs, str(tmp_path / "dp"), meanwhile=lambda: {
        key: train_run(_config(algo, 1, DP_STEPS, **hp), RunEnv(str(tmp_path / "sp")), comm=Comm(), write=False)
        for key, (algo, hp) in DP_CASES.items()})
    assert_workers_equal_one(parallel, single)
    torch.manual_seed(0)  # the engine's initialisation (seed 0)
    init = build_network("cnn_small", (1, 8, 8), 10)
    for ref in single.values():
        assert max(float(np.abs(ref.model_state[k].numpy() - init.state_dict()[k].numpy()).max()) for k in init.state_dict()) > 1e-3


def test_mixup_forward_after_the_consistency_backward_is_the_single_backward_to_the_bit():
    """The MixUp batch's loss is built only after the consistency term's backward (the two
    graphs never alive together): parameters, BatchNorm statistics and the reported loss equal,
    bit for bit, one backward of their sum, which the same step gives when the deferred term is
    resolved before stepping (a float32 BatchNorm network, two steps)."""
    from algorithms import Batch, Stepper

    def run(staged):
        torch.manual_seed(0)
        model = build_network("cnn_small_bn", (1, 8, 8), C)
        cls = get_algorithm("pseudo_label+meta_grad")
        algo = cls(model, cls.Hparams(threshold=0.0, meta_method="fd"),
                   TrainContext(num_classes=C, total_steps=100, generator=torch.Generator().manual_seed(5)))
        if not staged:
            inner = algo.rule.loss_terms

            def resolved(*a):
                terms = inner(*a)
                terms.labeled, terms.deferred_labeled = terms.deferred_labeled(), None
                return terms

            algo.rule.loss_terms = resolved
        g = torch.Generator().manual_seed(4)
        stepper = Stepper(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), None, Comm())
        out = []
        for step in range(2):
            batch = Batch(torch.randn(6, 1, 8, 8, generator=g), torch.randint(0, C, (6,), generator=g),
                          torch.randn(10, 1, 8, 8, generator=g))
            out.append(algo.train_step(batch, step + 20, stepper)["loss"])
        return model.state_dict(), out

    (sa, la), (sb, lb) = run(True), run(False)
    assert all(torch.equal(sa[k], sb[k]) for k in sa) and all(torch.equal(a, b) for a, b in zip(la, lb))


def test_step_in_stages_frees_the_first_graph_before_the_second_is_built():
    from algorithms import Stepper

    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    x1, x2 = torch.randn(5, 3), torch.randn(6, 3)
    first = model(x1).pow(2).mean()
    seen = []

    def later():
        with pytest.raises(RuntimeError):  # first's saved tensors are gone already
            first.backward()
        seen.append(True)
        return model(x2).sum()

    ref = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    ref.load_state_dict(model.state_dict())
    expected = ref(x2).sum().detach()
    value = Stepper(model, torch.optim.SGD(model.parameters(), lr=0.5), None, Comm()).step_in_stages(first, later)
    Stepper(ref, torch.optim.SGD(ref.parameters(), lr=0.5), None, Comm()).step(ref(x1).pow(2).mean() + ref(x2).sum())
    assert seen and torch.equal(value.detach(), expected)  # later's value, at the weights before the step
    for a, b in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-7)
