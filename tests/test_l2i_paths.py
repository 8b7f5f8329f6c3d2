"""L2I as the papers' algorithm boxes state it, against references written here.

* The three meta-gradient paths of L2I-O (through z, 001 Eq. 4 / App. B; z and the Hessian
  term; the total derivative, 000 Eq. 7) against one brute-force function
  G(a, b, c) = C_H(a - eta grad_q C(q, z(c))|_{q=b}) differentiated by ``torch.func``
  (z path = dG/dc, z + Hessian = dG/db + dG/dc, total = the sum of all three), and the total
  derivative against central differences of the look-ahead loss theta -> C_H(theta*(theta)).
* One training iteration of PL + L2I against 001 Alg. 1 (lines 4-11) and 000 Alg. 1 (options
  1 and 2) written out by hand, with the meta step's unlabeled term the squared error to z
  imputed from another augmentation (001 / 000 App. A.2).
* L2I-L first order vs exact with train-mode BatchNorm: the gap is O(eta).

Every network here is float64; the MLP's forward is written by hand.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.func import grad as fgrad

from algorithms import Batch, Stepper, TrainContext, get_algorithm
from algorithms.networks import build_network
from algorithms.networks.mlp import MLP242

D, C, H = 4, 3, 5
SLOPE = 0.1
NOISE = 0.3  # the augmentation: x + NOISE * N(0, 1), so that two views differ


def _augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return x + NOISE * torch.randn(x.shape, generator=g, dtype=x.dtype)


def _setup(algorithm: str, hp: dict, seed: int = 0, model=None, x_shape=(D,), b_u: int = 8):
    torch.manual_seed(seed)
    model = (model or MLP242(D, C, hidden=H, negative_slope=SLOPE)).double()
    cls = get_algorithm(algorithm)
    fields = {f.name for f in dataclasses.fields(cls.Hparams)}
    values = {"threshold": 0.0, "rampup": "none", "lambda_u": 2.0, **hp}
    algo = cls(model, cls.Hparams(**{k: v for k, v in values.items() if k in fields}),
               TrainContext(num_classes=C, total_steps=100, augment=_augment,
                            generator=torch.Generator().manual_seed(seed + 7)))
    g = torch.Generator().manual_seed(seed + 1)
    x = lambda n: torch.randn(n, *x_shape, generator=g, dtype=torch.float64)  # noqa: E731
    y = lambda n: torch.randint(0, C, (n,), generator=g)  # noqa: E731
    return algo, Batch(x(6), y(6), x(b_u), None, x(5), y(5))


def _f(P, x):
    """MLP242 by hand: Linear -> LeakyReLU -> Linear."""
    return F.leaky_relu(x @ P["fc1.weight"].T + P["fc1.bias"], SLOPE) @ P["classifier.weight"].T + P["classifier.bias"]


def _mse(logits, z):
    return ((F.softmax(logits, 1) - z) ** 2).sum(1)


def _params(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _look_ahead(x_l, y_l, x_a, x_b, x_h, y_h, eta, steps, labeled):
    """G(a, b, c): C_H after ``steps`` SGD steps on C(q, z) = [CE(f_q(x_l), y_l)] + mean ||softmax f_q(x_a) - z||^2,
    z = softmax(f_c(x_b)), the first step's gradient taken at b and applied to a."""
    def inner(q, z):
        loss = _mse(_f(q, x_a), z).mean()
        return loss + F.cross_entropy(_f(q, x_l), y_l) if labeled else loss

    def G(a, b, c):
        z = F.softmax(_f(c, x_b), 1)
        g = fgrad(inner)(b, z)
        cur = {n: a[n] - eta * g[n] for n in a}
        for _ in range(steps - 1):
            g = fgrad(inner)(cur, z)
            cur = {n: cur[n] - eta * g[n] for n in cur}
        return F.cross_entropy(_f(cur, x_h), y_h)

    return G


def _brute_paths(G, P):
    """{path: gradient by name} from the partial derivatives of G at a = b = c = P."""
    ga, gb, gc = fgrad(G, argnums=(0, 1, 2))(P, P, P)
    return {"z": gc, "z_hessian": {n: gb[n] + gc[n] for n in P}, "total": {n: ga[n] + gb[n] + gc[n] for n in P}}


class Recorder:
    """Wraps ``algo.prepare``, the rule's hold-out and meta views to keep what one iteration used."""

    def __init__(self, algo):
        self.seen: dict = {}
        core = algo.rule.core
        for obj, name in ((algo, "prepare"), (core, "holdout_views"), (core, "meta_views")):
            inner = getattr(obj, name)

            def wrapped(*a, _inner=inner, _name=name, **k):
                out = _inner(*a, **k)
                self.seen[_name] = out
                return out

            setattr(obj, name, wrapped)


# -- 1. the three paths against brute force ----------------------------------------------------
@pytest.mark.parametrize("steps,labeled", [(1, True), (1, False), (2, True)])
@pytest.mark.parametrize("path", ["z", "z_hessian", "total"])
def test_meta_gradient_paths_equal_brute_force(path, steps, labeled):
    algo, batch = _setup("pseudo_label+l2i_o", {"l2i_meta_path": path, "l2i_inner_steps": steps,
                                                "l2i_inner_labeled": labeled})
    s = algo.prepare(batch, 0)
    views = algo.rule.core.meta_views(s, batch)
    assert not torch.allclose(views.x_u, views.x_z)  # two augmentations
    x_h, y_h = algo.rule.core.holdout_views(batch)
    eta = 0.6
    grads, _ = algo.rule.meta_gradients(s, views, x_h, y_h, eta)
    G = _look_ahead(s.x_l, s.y_l, views.x_u, views.x_z, x_h, y_h, eta, steps, labeled)
    ref = _brute_paths(G, _params(algo.model))
    for n, r in ref[path].items():
        torch.testing.assert_close(grads[n], r, rtol=1e-9, atol=1e-12, msg=n)
    others = [p for p in ref if p != path]
    assert all(max(float((ref[p][n] - ref[path][n]).abs().max()) for n in ref[path]) > 1e-6 for p in others)


def test_total_derivative_is_the_derivative_of_the_look_ahead_loss():
    """000 Eq. 7 is d/dtheta C_H(theta - eta grad C(theta, z(theta))): central differences of that scalar."""
    algo, batch = _setup("pseudo_label+l2i_o", {"l2i_meta_path": "total", "l2i_inner_labeled": False})
    s = algo.prepare(batch, 0)
    views = algo.rule.core.meta_views(s, batch)
    x_h, y_h = algo.rule.core.holdout_views(batch)
    eta = 0.6
    grads, _ = algo.rule.meta_gradients(s, views, x_h, y_h, eta)
    G = _look_ahead(s.x_l, s.y_l, views.x_u, views.x_z, x_h, y_h, eta, 1, False)
    P, e = _params(algo.model), 1e-6
    for n, t in P.items():
        fd = torch.zeros_like(t)
        for i in range(t.numel()):
            def at(delta):
                Q = dict(P)
                Q[n] = t.clone().reshape(-1).index_add(0, torch.tensor([i]), torch.tensor([delta], dtype=t.dtype)
                                                      ).reshape(t.shape)
                return float(G(Q, Q, Q))
            fd.view(-1)[i] = (at(e) - at(-e)) / (2 * e)
        torch.testing.assert_close(grads[n], fd, rtol=1e-6, atol=1e-9, msg=n)


def test_approx_differentiates_through_z_only():
    from algorithms import ConfigError, parse_hparams

    with pytest.raises(ConfigError, match="through z only"):
        parse_hparams("pseudo_label+l2i_o", {"meta_method": "approx", "l2i_meta_path": "total"})
    with pytest.raises(ConfigError, match="l2i_inner_loss base"):
        parse_hparams("pseudo_label+l2i_l", {"l2i_label_init": "psi"})


# -- 2. one iteration against the algorithm boxes ---------------------------------------------
def _base_step(P, s, lam, alpha):
    """001 Alg. 1 lines 4-6 / 000 Alg. 1 (PL, no threshold): Z = one-hot argmax f(x_u), theta_hat =
    theta - alpha grad [CE(f(x_l), y_l) + lam mean CE(f(x_u), Z)]."""
    Q = {n: t.clone().requires_grad_(True) for n, t in P.items()}
    z = F.one_hot(_f(P, s.x_u_student).argmax(1), C).double()
    loss = F.cross_entropy(_f(Q, s.x_l), s.y_l) + lam * (-(z * F.log_softmax(_f(Q, s.x_u_student), 1)).sum(1)).mean()
    g = torch.autograd.grad(loss, list(Q.values()))
    return {n: P[n] - alpha * gg for n, gg in zip(P, g)}


def _sgd_run(algo, batch, alpha):
    rec = Recorder(algo)
    algo.train_step(batch, 0, Stepper(algo.model, torch.optim.SGD(algo.model.parameters(), lr=alpha), None,
                                      algo.ctx.comm))
    return rec.seen


@pytest.mark.parametrize("paper", ["001", "000"])
def test_l2i_o_iteration_is_the_algorithm_box(paper):
    """001 Alg. 1 (C_T + C_U in the virtual step, meta-gradient through z, Eq. 4) or 000 Alg. 1
    option 2 (C_U alone, the total derivative of Eq. 7): lines 7-11 by hand."""
    alpha, k = 0.1, 4.0
    hp = {"l2i_inner_lr_scale": k, "l2i_inner_labeled": paper == "001", "l2i_meta_path": "z" if paper == "001" else "total"}
    algo, batch = _setup("pseudo_label+l2i_o", hp, seed=2)
    P = _params(algo.model)
    seen = _sgd_run(algo, batch, alpha)
    s, views, (x_h, y_h) = seen["prepare"], seen["meta_views"], seen["holdout_views"]
    for x in (views.x_u, views.x_z):  # two new augmentations of the unlabeled batch
        assert not torch.equal(x, s.x_u_student) and float((x - batch.x_u).abs().max()) < 6 * NOISE
    P_hat = _base_step(P, s, 2.0, alpha)
    G = _look_ahead(s.x_l, s.y_l, views.x_u, views.x_z, x_h, y_h, k * alpha, 1, paper == "001")
    meta = _brute_paths(G, P_hat)["z" if paper == "001" else "total"]  # line 11: dC_H/dtheta_hat
    for n, p in algo.model.named_parameters():
        torch.testing.assert_close(p.detach(), P_hat[n] - alpha * meta[n], rtol=1e-9, atol=1e-12, msg=n)


def test_l2i_l_iteration_is_000_option_1():
    """000 Alg. 1 option 1: z = softmax f_theta_hat(x_b); z_hat = z - eta_z B_u dC_V(theta*(z))/dz onto the
    simplex; theta_t+1 = theta_hat - alpha grad mean ||softmax f(x_a) - z_hat||^2 (MSE, 000 App. A.2)."""
    alpha, k, eta_z = 0.1, 4.0, 5.0
    algo, batch = _setup("pseudo_label+l2i_l", {"l2i_inner_lr_scale": k, "l2i_inner_labeled": False,
                                                "l2i_label_lr": eta_z}, seed=3)
    P = _params(algo.model)
    seen = _sgd_run(algo, batch, alpha)
    s, views, (x_h, y_h) = seen["prepare"], seen["meta_views"], seen["holdout_views"]
    P_hat = _base_step(P, s, 2.0, alpha)
    z = F.softmax(_f(P_hat, views.x_z), 1).requires_grad_(True)
    Q = {n: t.clone().requires_grad_(True) for n, t in P_hat.items()}
    g = torch.autograd.grad(_mse(_f(Q, views.x_u), z).mean(), list(Q.values()), create_graph=True)
    star = {n: P_hat[n] - k * alpha * gg for n, gg in zip(Q, g)}
    (dz,) = torch.autograd.grad(F.cross_entropy(_f(star, x_h), y_h), z)
    raw = (z - eta_z * z.shape[0] * dz).detach()
    assert bool((raw < 0).any()) and bool((raw.clamp(min=0).sum(1) > 0).all())  # the projection acts, no row vanishes
    z_hat = raw.clamp(min=0) / raw.clamp(min=0).sum(1, keepdim=True)
    Q = {n: t.clone().requires_grad_(True) for n, t in P_hat.items()}
    g = torch.autograd.grad(_mse(_f(Q, views.x_u), z_hat).mean(), list(Q.values()))
    for (n, p), gg in zip(algo.model.named_parameters(), g):
        torch.testing.assert_close(p.detach(), P_hat[n] - alpha * gg, rtol=1e-9, atol=1e-12, msg=n)


def test_base_inner_loss_is_the_earlier_behaviour_by_name():
    """``l2i_inner_loss base`` on Pseudo-Label: z from the student's own view, so grad C_U = 0 at
    theta_hat and only C_T moves the virtual step (the deviation the paper version fixes)."""
    algo, batch = _setup("pseudo_label+l2i_o", {"l2i_inner_loss": "base", "l2i_inner_labeled": False})
    s = algo.prepare(batch, 0)
    views = algo.rule.core.meta_views(s, batch)
    assert views.x_u is s.x_u_student and views.x_z is s.x_u_student
    x_h, y_h = algo.rule.core.holdout_views(batch)
    grads, _ = algo.rule.meta_gradients(s, views, x_h, y_h, 0.6)
    # C_U(theta, z(theta)) = CE(f(x), softmax f(x)) has zero gradient at theta: the virtual step stands still,
    # and the meta-gradient through z is -eta (dz/dtheta)^T (d grad C_U / dz)^T grad C_H(theta)
    P = _params(algo.model)
    G = _look_ahead(s.x_l, s.y_l, s.x_u_student, s.x_u_student, x_h, y_h, 0.6, 1, False)
    assert float(G(P, P, P)) == pytest.approx(float(F.cross_entropy(_f(P, x_h), y_h)), rel=1e-12, abs=1e-12)
    assert sum(float(t.abs().sum()) for t in grads.values()) > 1e-8


# -- 3. L2I-L first order is the eta -> 0 limit of exact, with train-mode BatchNorm -----------
def _bn_setup():
    torch.manual_seed(0)
    model = build_network("cnn_small_bn", (1, 8, 8), C)
    return _setup("pseudo_label+l2i_l", {"meta_bn": "train", "l2i_inner_labeled": True}, model=model,
                  x_shape=(1, 8, 8), b_u=10)


def test_l2i_l_first_order_gap_to_exact_is_order_eta_with_batchnorm():
    algo, batch = _bn_setup()
    s = algo.prepare(batch, 0)
    views = algo.rule.core.meta_views(s, batch)
    x_h, y_h = algo.rule.core.holdout_views(batch)
    z = algo.rule.initial_labels(s, views)
    etas = [1e-4, 1e-5, 1e-6, 1e-7]  # where the virtual step crosses no ReLU kink: the asymptotic regime
    gaps = []
    for eta in etas:
        algo.rule.hp.meta_method = "exact"
        exact, _ = algo.rule.label_gradient(s, views, z, x_h, y_h, eta)
        algo.rule.hp.meta_method = "jvp"
        first, _ = algo.rule.label_gradient(s, views, z, x_h, y_h, eta)
        gaps.append(float((exact - first).norm() / first.norm()))
    slope = np.polyfit(np.log(etas), np.log(gaps), 1)[0]
    assert 0.8 < slope < 1.3, (gaps, slope)
    assert gaps[-1] < 1e-5, gaps
    # the earlier first order (BatchNorm statistics of x_u alone) does not tend to the exact result
    P = {n: p.detach().clone().requires_grad_(True) for n, p in algo.model.named_parameters()}
    from algorithms.meta import functional_forward

    v = torch.autograd.grad(F.cross_entropy(functional_forward(algo.model, P, x_h, "train"), y_h), list(P.values()))
    zz = z.clone().requires_grad_(True)
    c_u = _mse(functional_forward(algo.model, P, views.x_u, "train"), zz).mean()
    gu = torch.autograd.grad(c_u, list(P.values()), create_graph=True)
    (old,) = torch.autograd.grad(sum((a * b).sum() for a, b in zip(v, gu)), zz)
    eta = etas[-1]
    algo.rule.hp.meta_method = "exact"
    exact, _ = algo.rule.label_gradient(s, views, z, x_h, y_h, eta)
    assert float((exact + eta * old).norm() / exact.norm()) > 1e-2


# -- 4. savings of issue 14: equal to the computations they replace ----------------------------
def test_l2i_l_first_order_label_gradient_equals_double_backward():
    """-K eta w d/dz <v, grad_theta mean C_U(theta, z)> with v = grad C_H, C_U's rows from the
    forward of cat([x_l, x_u]) (train-mode BatchNorm), by a double backward written out here;
    the rule takes the logits from the jvp's primal, not from a separate forward."""
    algo, batch = _bn_setup()
    algo.rule.hp.meta_method = "jvp"
    s = algo.prepare(batch, 0)
    views = algo.rule.core.meta_views(s, batch)
    x_h, y_h = algo.rule.core.holdout_views(batch)
    z = algo.rule.initial_labels(s, views)
    eta = 0.3
    got = algo.rule.first_order_label_gradient(s, views, z, x_h, y_h, eta)
    from algorithms.meta import functional_forward

    P = {n: p.detach().clone().requires_grad_(True) for n, p in algo.model.named_parameters()}
    v = torch.autograd.grad(F.cross_entropy(functional_forward(algo.model, P, x_h, "train"), y_h), list(P.values()))
    zz = z.clone().requires_grad_(True)
    n_l = s.x_l.shape[0]
    c_u = _mse(functional_forward(algo.model, P, torch.cat([s.x_l, views.x_u]), "train")[n_l:], zz).mean()
    gu = torch.autograd.grad(c_u, list(P.values()), create_graph=True)
    (want,) = torch.autograd.grad(sum((a * b).sum() for a, b in zip(v, gu)), zz)
    want = -algo.rule.hp.l2i_inner_steps * eta * want
    assert float((got - want).norm() / want.norm()) < 1e-10


@pytest.mark.parametrize("method", ["jvp", "fd"])
def test_directional_derivatives_with_value_is_the_plain_forward(method):
    """``with_value``: the derivatives are bit-identical to the call without it, and the value is
    the forward at theta (jvp's primal: to float noise; fd's third forward: bit-identical)."""
    from algorithms.meta import directional_derivatives, functional_forward, parameters_of

    model = build_network("cnn_small_bn", (1, 8, 8), C).double()
    x = torch.randn(7, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    v = {n: torch.randn_like(p) for n, p in parameters_of(model).items()}
    plain = directional_derivatives(model, lambda out, t: out, x, x, v, "train", method)
    value, d = directional_derivatives(model, lambda out, t: out, x, x, v, "train", method, with_value=True)
    assert torch.equal(d, plain)
    with torch.no_grad():
        ref = functional_forward(model, parameters_of(model), x, "train")
    if method == "fd":
        assert torch.equal(value, ref)
    else:
        torch.testing.assert_close(value, ref, rtol=1e-12, atol=1e-12)


class _DropoutMLP(torch.nn.Module):
    """Linear -> ReLU -> Dropout(0.5) -> classifier: every meta pass in train mode draws masks."""

    def __init__(self):
        super().__init__()
        self.features = torch.nn.Sequential(torch.nn.Linear(D, H), torch.nn.ReLU(), torch.nn.Dropout(0.5))
        self.classifier = torch.nn.Linear(H, C)

    def forward(self, x):
        return self.classifier(self.features(x))


@pytest.mark.parametrize("rule,method", [("l2i_o", "exact"), ("l2i_o", "approx"), ("l2i_l", "jvp"), ("l2i_l", "fd")])
def test_holdout_diagnostics_cadence_leaves_training_unchanged(rule, method):
    """C_H before / after every diag_every steps: with dropout in the meta passes (meta_bn
    train), training with the diagnostics every step, every 3rd step and never is bit-identical,
    and the reported values are the last computed ones (NaN before the first)."""
    runs = {}
    for every in (1, 3, 0):
        torch.manual_seed(0)
        algo, batch = _setup(f"pseudo_label+{rule}", {"meta_method": method, "diag_every": every}, model=_DropoutMLP())
        stepper = Stepper(algo.model, torch.optim.SGD(algo.model.parameters(), lr=0.05), None, algo.ctx.comm)
        outs = [algo.train_step(batch, step, stepper) for step in range(4)]
        runs[every] = ([p.detach().clone() for p in algo.model.parameters()], outs)
    for every in (3, 0):
        assert all(torch.equal(a, b) for a, b in zip(runs[1][0], runs[every][0])), every
    every1, every3, never = runs[1][1], runs[3][1], runs[0][1]
    for k in ("holdout_loss_before", "holdout_loss_after"):
        assert float(every3[0][k]) == float(every1[0][k]) and float(every3[3][k]) == float(every1[3][k])
        assert float(every3[1][k]) == float(every3[2][k]) == float(every1[0][k])
        assert float(every1[1][k]) != float(every1[0][k])
        assert all(np.isnan(float(o[k])) for o in never)


def test_l2i_o_approx_with_one_z_forward_equals_the_two_forward_computation():
    """approx keeps z's forward graph for the pull-back: the meta-gradient equals the earlier
    computation (a no-grad forward of z, then ``pull_back``'s own forward), on a BatchNorm net."""
    from algorithms.meta import parameters_of, pull_back

    model = build_network("cnn_small_bn", (1, 8, 8), C)
    algo, batch = _setup("pseudo_label+l2i_o", {"meta_method": "approx", "meta_bn": "train"}, model=model,
                         x_shape=(1, 8, 8), b_u=10)
    s = algo.prepare(batch, 0)
    core = algo.rule.core
    views = core.meta_views(s, batch)
    x_h, y_h = core.holdout_views(batch)
    got, c_h = algo.rule.meta_gradients(s, views, x_h, y_h, 0.5)
    params = parameters_of(algo.model)
    with torch.no_grad():
        z = core.model_output(views)(params)
    g_z, c_h_ref = core.approx_label_gradient(s, views, z, x_h, y_h, 0.5)
    want = pull_back(params, core.model_output(views), g_z)
    assert float(c_h) == float(c_h_ref)
    for n in want:
        torch.testing.assert_close(got[n], want[n], rtol=1e-12, atol=1e-14, msg=n)
