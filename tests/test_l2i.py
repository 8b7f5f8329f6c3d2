"""L2I rules (l2i_o, l2i_l) against independent computations.

Oracles: 001 Appendix B closed forms for a one-layer network (Eq. 9, 11: classification;
Eq. 13, 15: regression); a double backward through a hand-written forward and virtual step
with the imputer's parameters as a separate copy (OPT2's theta vs theta'); 001 Eq. 6 from
features by hand; finite differences of C_H(theta*(z)) in float64.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from algorithms import Batch, TrainContext, get_algorithm
from algorithms.networks import build_network
from algorithms.networks.mlp import MLP242
from algorithms.meta import clip_to_simplex, label_meta_gradient, pull_back
from bench.config import RunConfig, RunEnv
from bench.engine import train_run
from tests.gloo import run_workers

D, C, H = 4, 3, 5
SLOPE = 0.1


# -- 1. closed forms of 001 Appendix B (one-layer network, sums over samples, lambda = 1) -------
def _one_layer_data(seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    theta = 0.5 * r(D)
    x_t, x_u, x_h, noise = r(6, D), r(4, D), r(5, D), 0.3 * r(4, D)
    return g, theta, x_t, x_u, x_h, noise


def test_closed_forms_binary_classification_eq9_eq11():
    g, theta, x_t, x_u, x_h, noise = _one_layer_data()
    y_t = torch.randint(0, 2, (6,), generator=g).double()
    y_h = torch.randint(0, 2, (5,), generator=g).double()
    eta = 0.3
    sig = torch.sigmoid

    def bce(p, t):  # sum over samples, soft targets allowed
        return -(t * torch.log(p) + (1 - t) * torch.log(1 - p)).sum()

    inner = lambda p, z: bce(sig(x_t @ p["w"]), y_t) + bce(sig(x_u @ p["w"]), z)  # noqa: E731
    hold = lambda p: bce(sig(x_h @ p["w"]), y_h)  # noqa: E731
    z_fn = lambda p: sig((x_u + noise) @ p["w"])  # noqa: E731  z = psi(x_u) = sigma(theta^T (x_u + eta))
    z = z_fn({"w": theta})
    g_z, _ = label_meta_gradient({"w": theta}, z, inner, hold, eta)
    # Eq. 7 with the gradient of the cross-entropy, then Eq. 11
    theta_star = theta - eta * ((sig(x_t @ theta) - y_t) @ x_t + (sig(x_u @ theta) - z) @ x_u)
    eq11 = eta * ((sig(x_h @ theta_star) - y_h) @ x_h) @ x_u.T  # [U]: sum_H (sigma(theta*^T x) - y) x^T x_u
    torch.testing.assert_close(g_z, eq11, rtol=1e-10, atol=1e-12)
    # Eq. 9: times dz/dtheta = sigma(.)(1 - sigma(.)) (x_u + eta), summed over unlabeled samples
    meta = pull_back({"w": theta}, z_fn, g_z)["w"]
    s = sig((x_u + noise) @ theta)
    eq9 = ((eq11 * s * (1 - s))[:, None] * (x_u + noise)).sum(0)
    torch.testing.assert_close(meta, eq9, rtol=1e-10, atol=1e-12)


def test_closed_forms_regression_eq13_eq15():
    g, theta, x_t, x_u, x_h, noise = _one_layer_data(1)
    y_t, y_h = torch.randn(6, generator=g, dtype=torch.float64), torch.randn(5, generator=g, dtype=torch.float64)
    eta = 0.05
    sq = lambda pred, t: ((pred - t) ** 2).sum()  # noqa: E731  l = ||theta^T x - y||^2
    inner = lambda p, z: sq(x_t @ p["w"], y_t) + sq(x_u @ p["w"], z)  # noqa: E731
    hold = lambda p: sq(x_h @ p["w"], y_h)  # noqa: E731
    z_fn = lambda p: (x_u + noise) @ p["w"]  # noqa: E731
    z = z_fn({"w": theta})
    g_z, _ = label_meta_gradient({"w": theta}, z, inner, hold, eta)
    theta_star = theta - 2 * eta * ((x_t @ theta - y_t) @ x_t + (x_u @ theta - z) @ x_u)  # Eq. 12
    eq15 = 4 * eta * ((x_h @ theta_star - y_h) @ x_h) @ x_u.T
    torch.testing.assert_close(g_z, eq15, rtol=1e-10, atol=1e-12)
    meta = pull_back({"w": theta}, z_fn, g_z)["w"]
    eq13 = (eq15[:, None] * (x_u + noise)).sum(0)
    torch.testing.assert_close(meta, eq13, rtol=1e-10, atol=1e-12)


# -- one virtual step forward over reverse == the double backward, on a real network ------------
class _BNDropoutNet(torch.nn.Module):
    """conv-BN-LReLU-dropout-pool-linear: train-mode BatchNorm couples the samples of a forward,
    dropout makes it random, so the forward-mode pass must see the virtual step's batch and masks."""

    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4),
                                        torch.nn.LeakyReLU(0.1), torch.nn.Dropout(0.3),
                                        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
        self.classifier = torch.nn.Linear(4, C)

    def forward(self, x):
        return self.classifier(self.body(x))


@pytest.mark.parametrize("inner_kind", ["mse_views", "soft_cross_entropy"])
def test_one_step_forward_over_reverse_equals_the_double_backward(inner_kind):
    from algorithms import losses
    from algorithms.meta.functional import functional_forward, parameters_of

    torch.manual_seed(0)
    model = _BNDropoutNet().double().train()
    g = torch.Generator().manual_seed(3)
    x = torch.randn(10, 1, 5, 5, generator=g, dtype=torch.float64)  # 4 labeled + 6 unlabeled, one forward
    x_h = torch.randn(7, 1, 5, 5, generator=g, dtype=torch.float64)
    y_l, y_h = torch.randint(0, C, (4,), generator=g), torch.randint(0, C, (7,), generator=g)
    z = torch.softmax(torch.randn(6, C, generator=g, dtype=torch.float64), 1)
    dist = losses.softmax_squared_error if inner_kind == "mse_views" else losses.soft_cross_entropy

    def inner(p, zz):
        out = functional_forward(model, p, x, "train")
        return 0.8 * dist(out[4:], zz).mean() + F.cross_entropy(out[:4], y_l)

    hold = lambda p: F.cross_entropy(functional_forward(model, p, x_h, "train"), y_h)  # noqa: E731
    params = parameters_of(model)
    results = {}
    for mixed in ("reverse", "forward"):
        torch.manual_seed(11)
        g_z, c_h = label_meta_gradient(params, z, inner, hold, 0.6, mixed=mixed)
        results[mixed] = (g_z, c_h, torch.rand(5))  # the draws after: training's stream goes on alike
    (a, ca, ra), (b, cb, rb) = results["reverse"], results["forward"]
    torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-14)
    assert torch.equal(ca, cb) and torch.equal(ra, rb)
    assert a.abs().max() > 1e-4  # not a vacuous zero
    for p, t in zip(model.parameters(), params.values()):
        assert p.grad is None and torch.equal(p.detach(), t)
    # more inner steps: the double backward, whichever mixed derivative was asked for
    torch.manual_seed(11)
    two_f, _ = label_meta_gradient(params, z, inner, hold, 0.6, inner_steps=2, mixed="forward")
    torch.manual_seed(11)
    two_r, _ = label_meta_gradient(params, z, inner, hold, 0.6, inner_steps=2, mixed="reverse")
    assert torch.equal(two_f, two_r)


# -- a small composed algorithm on a 2-layer MLP (float64) --------------------------------------
def _setup(algorithm="pseudo_label+l2i_o", hp=None, model=None, seed=0, x_shape=(D,)):
    torch.manual_seed(seed)
    model = (model or MLP242(D, C, hidden=H, negative_slope=SLOPE)).double()
    cls = get_algorithm(algorithm)
    base = {"threshold": 0.0, "rampup": "none"} if algorithm.startswith("pseudo_label") else {"rampup": "none"}
    # the base's own distance and views (the references below write C_U that way; the
    # paper's squared error on two views: tests/test_l2i_paths.py)
    base["l2i_inner_loss"] = "base"
    fields = {f.name for f in __import__("dataclasses").fields(cls.Hparams)}
    values = {k: v for k, v in {**base, **(hp or {})}.items() if k in fields}
    algo = cls(model, cls.Hparams(**values), TrainContext(num_classes=C, total_steps=100))
    g = torch.Generator().manual_seed(seed + 1)
    batch = Batch(torch.randn(6, *x_shape, generator=g, dtype=torch.float64), torch.randint(0, C, (6,), generator=g),
                  torch.randn(8, *x_shape, generator=g, dtype=torch.float64), None,
                  torch.randn(5, *x_shape, generator=g, dtype=torch.float64), torch.randint(0, C, (5,), generator=g))
    return algo, batch


def _f(P, x):
    """The MLP242 forward by hand."""
    h = F.leaky_relu(x @ P["fc1.weight"].T + P["fc1.bias"], SLOPE)
    return h @ P["classifier.weight"].T + P["classifier.bias"]


def _feat(P, x):
    return F.leaky_relu(x @ P["fc1.weight"].T + P["fc1.bias"], SLOPE)


def _soft_ce(logits, t):
    return -(t * F.log_softmax(logits, 1)).sum(1)


def _ref_inner(P, s, z, w=1.0):
    """C_T + w C_U for Pseudo-Label (soft cross-entropy, mask from s)."""
    return F.cross_entropy(_f(P, s.x_l), s.y_l) + w * (s.mask * _soft_ce(_f(P, s.x_u_student), z)).mean()


def _params(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


# -- 2. l2i_o exact == double backward with the imputer's parameters as a separate copy --------
@pytest.mark.parametrize("steps", [1, 2])
def test_l2i_o_exact_matches_two_copy_double_backward(steps):
    algo, batch = _setup(hp={"l2i_inner_steps": steps})
    s = algo.prepare(batch, 0)
    x_h, y_h = batch.x_h, batch.y_h
    eta = 0.7
    grads, _ = algo.rule.meta_gradients(s, algo.rule.core.meta_views(s, batch), x_h, y_h, eta)

    P0 = _params(algo.model)
    P_imp = {n: t.clone().requires_grad_(True) for n, t in P0.items()}  # theta that imputes (OPT2)
    z = F.softmax(_f(P_imp, s.x_u_student), 1)
    cur = {n: t.clone().requires_grad_(True) for n, t in P0.items()}  # theta' of the inner problem
    for _ in range(steps):
        gr = torch.autograd.grad(_ref_inner(cur, s, z), list(cur.values()), create_graph=True)
        cur = {n: t - eta * gg for (n, t), gg in zip(cur.items(), gr)}
    c_h = F.cross_entropy(_f(cur, x_h), y_h)
    ref = torch.autograd.grad(c_h, list(P_imp.values()))
    for (n, _), r in zip(P_imp.items(), ref):
        torch.testing.assert_close(grads[n], r, rtol=1e-9, atol=1e-12)
    assert sum(float(r.abs().sum()) for r in ref) > 1e-6  # not a vacuous zero


# -- 3. approx == 001 Eq. 6 by hand from features ------------------------------------------------
def test_l2i_o_approx_matches_eq6_from_features():
    algo, batch = _setup(hp={"meta_method": "approx"})
    s = algo.prepare(batch, 0)
    eta = 0.9
    grads, _ = algo.rule.meta_gradients(s, algo.rule.core.meta_views(s, batch), batch.x_h, batch.y_h, eta)

    P = _params(algo.model)
    W, b = P["classifier.weight"], P["classifier.bias"]
    h_l, h_u, h_h = _feat(P, s.x_l), _feat(P, s.x_u_student), _feat(P, batch.x_h)
    p_l, p_u = F.softmax(h_l @ W.T + b, 1), F.softmax(h_u @ W.T + b, 1)
    z = p_u  # model-output imputation on the same view (Pseudo-Label)
    r_l = p_l - F.one_hot(s.y_l, C)
    r_u = p_u * z.sum(1, keepdim=True) - z  # d soft-CE / d logits
    W_star = W - eta * (r_l.T @ h_l / len(h_l) + r_u.T @ h_u / len(h_u))
    b_star = b - eta * (r_l.mean(0) + r_u.mean(0))
    e_h = F.softmax(h_h @ W_star.T + b_star, 1) - F.one_hot(batch.y_h, C)  # Phi_theta*(x) - y
    S = (h_u @ h_h.T + 1.0) @ e_h / len(h_h)  # [U, C]: sum_H (Phi*(x) - y) (f(x)^T f(x_u) + 1 for the bias)
    g_z = eta / len(h_u) * (S - (p_u * S).sum(1, keepdim=True))  # softmax CE: d^2 d/dl dz = p - I
    P_imp = {n: t.clone().requires_grad_(True) for n, t in P.items()}
    ref = torch.autograd.grad(F.softmax(_f(P_imp, s.x_u_student), 1), list(P_imp.values()), grad_outputs=g_z)
    for (n, _), r in zip(P_imp.items(), ref):
        torch.testing.assert_close(grads[n], r, rtol=1e-9, atol=1e-12)


# -- 4. l2i_l: dC_H/dz == finite differences; first order == hand mixed derivative ---------------
def test_l2i_l_label_gradient_matches_finite_differences():
    algo, batch = _setup("pseudo_label+l2i_l", {"l2i_label_lr": 0.5})
    s = algo.prepare(batch, 0)
    eta = 0.8
    views = algo.rule.core.meta_views(s, batch)
    z0 = algo.rule.initial_labels(s, views)
    g, _ = algo.rule.label_gradient(s, views, z0, batch.x_h, batch.y_h, eta)

    P0 = _params(algo.model)

    def c_h_of(z):
        P = {n: t.clone().requires_grad_(True) for n, t in P0.items()}
        gr = torch.autograd.grad(_ref_inner(P, s, z), list(P.values()))
        return float(F.cross_entropy(_f({n: P0[n] - eta * gg for n, gg in zip(P, gr)}, batch.x_h), batch.y_h))

    fd = torch.zeros_like(z0)
    e = 1e-6
    for i in range(z0.shape[0]):
        for c in range(C):
            zp, zm = z0.clone(), z0.clone()
            zp[i, c] += e
            zm[i, c] -= e
            fd[i, c] = (c_h_of(zp) - c_h_of(zm)) / (2 * e)
    torch.testing.assert_close(g, fd, rtol=1e-5, atol=1e-9)
    # the update: z - eta_z * B_u * dC_H/dz, projected onto the simplex
    _, z1, _, _ = algo.rule.corrected_labels(s, views, batch.x_h, batch.y_h, eta)
    step = z0 - 0.5 * z0.shape[0] * fd
    expected = step.clamp(min=0) / step.clamp(min=0).sum(1, keepdim=True)
    torch.testing.assert_close(z1, expected, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("method,tol", [("jvp", 1e-9), ("fd", 1e-3)])
def test_l2i_l_first_order_is_the_mixed_derivative(method, tol):
    algo, batch = _setup("mean_teacher+l2i_l", {"meta_method": method, "lambda_u": 3.0, "l2i_inner_lambda": True})
    s = algo.prepare(batch, 0)
    eta = 0.4
    views = algo.rule.core.meta_views(s, batch)
    z0 = algo.rule.initial_labels(s, views)
    g, _ = algo.rule.label_gradient(s, views, z0, batch.x_h, batch.y_h, eta)
    # -eta d/dz <grad C_H(theta), grad_theta (w C_U(theta, z))>, MT distance ||softmax - z||^2, by double backward
    P = {n: t.clone().requires_grad_(True) for n, t in _params(algo.model).items()}
    v = torch.autograd.grad(F.cross_entropy(_f(P, batch.x_h), batch.y_h), list(P.values()))
    zz = z0.clone().requires_grad_(True)
    c_u = 3.0 * ((F.softmax(_f(P, s.x_u_student), 1) - zz) ** 2).sum(1).mean()
    gu = torch.autograd.grad(c_u, list(P.values()), create_graph=True)
    ref = -eta * torch.autograd.grad(sum((a * b).sum() for a, b in zip(v, gu)), zz)[0]
    assert float(ref.abs().max()) > 1e-8
    torch.testing.assert_close(g, ref, rtol=tol, atol=tol * float(ref.abs().max()))


def test_simplex_projection_keeps_the_old_row_where_nothing_is_left():
    z_old = torch.tensor([[0.5, 0.5], [0.3, 0.7]])
    out = clip_to_simplex(torch.tensor([[1.5, -0.5], [-1.0, -2.0]]), fallback=z_old)
    torch.testing.assert_close(out, torch.tensor([[1.0, 0.0], [0.3, 0.7]]))


# -- 5. BatchNorm statistics untouched by every meta pass ----------------------------------------
@pytest.mark.parametrize("bn", ["train", "eval"])
def test_bn_statistics_untouched(bn):
    for algorithm, hp in [("pseudo_label+l2i_o", {}), ("pseudo_label+l2i_o", {"meta_method": "approx"}),
                          ("mean_teacher+l2i_l", {}), ("mean_teacher+l2i_l", {"meta_method": "jvp"}),
                          ("mean_teacher+l2i_l", {"meta_method": "fd"})]:
        torch.manual_seed(0)
        model = build_network("cnn_small_bn", (1, 8, 8), C)
        algo, batch = _setup(algorithm, {**hp, "meta_bn": bn}, model=model, x_shape=(1, 8, 8))
        s = algo.prepare(batch, 0)
        before = {n: b.clone() for n, b in algo.model.named_buffers()}
        if algorithm.endswith("l2i_o"):
            grads, _ = algo.rule.meta_gradients(s, algo.rule.core.meta_views(s, batch), batch.x_h, batch.y_h, 0.5)
            assert all(torch.isfinite(t).all() for t in grads.values())
        else:
            z0, z1, g, _ = algo.rule.corrected_labels(s, algo.rule.core.meta_views(s, batch), batch.x_h, batch.y_h, 0.5)
            assert torch.isfinite(z1).all()
        algo.rule.core.holdout_value(batch.x_h, batch.y_h)
        for n, b in algo.model.named_buffers():
            assert torch.equal(b, before[n]), (algorithm, hp, n)


# -- the rule changes the update; the schedule advances once per iteration ----------------------
class _Stepper:
    def __init__(self, model, lr=0.1):
        from algorithms import Comm, Stepper

        opt = torch.optim.SGD(model.parameters(), lr=lr)
        self.sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0 / (1 + t))
        self.stepper = Stepper(model, opt, self.sched, Comm())


@pytest.mark.parametrize("rule", ["l2i_o", "l2i_l"])
def test_rule_moves_parameters_differently_and_schedule_steps_once(rule):
    algo_r, batch = _setup(f"pseudo_label+{rule}")
    algo_b, _ = _setup("pseudo_label")
    st_r, st_b = _Stepper(algo_r.model), _Stepper(algo_b.model)
    out = algo_r.train_step(batch, 0, st_r.stepper)
    algo_b.train_step(batch, 0, st_b.stepper)
    diff = sum(float((a - b).abs().sum()) for a, b in zip(algo_r.model.parameters(), algo_b.model.parameters()))
    assert diff > 1e-6
    assert st_r.sched.last_epoch == st_b.sched.last_epoch == 1
    for k in ("loss", "holdout_loss_before", "holdout_loss_after", "meta_grad_norm"):
        assert k in out and out[k] == out[k]
    assert out["meta_grad_norm"] > 0
    if rule == "l2i_l":
        assert out["label_correction"] > 0


# -- 6. compositions train through the engine ---------------------------------------------------
def _cfg(algorithm, hp, steps=20):
    return RunConfig.from_dict(dict(
        dataset="digits", algorithm=algorithm, network="cnn_small", n_labels=50, steps=steps, eval_every=steps,
        batch_labeled=8, batch_unlabeled=16, optim={"lr": 0.05}, hparams={"holdout_batch": 8, **hp}))


@pytest.mark.parametrize("algorithm,hp", [
    ("pseudo_label+l2i_o", {"threshold": 0.5}),
    ("mean_teacher+l2i_l", {}),
    ("fixmatch+l2i_o", {"meta_method": "approx", "threshold": 0.5}),
    ("mixmatch+l2i_o", {"holdout": "separate"}),
])
def test_compositions_train_through_engine(tmp_path, algorithm, hp):
    out = train_run(_cfg(algorithm, hp), RunEnv(str(tmp_path)), write=False)
    assert out.status == "ok", out.run_row["error_message"]
    last = out.eval_rows[-1]
    for k in ("diag_loss", "diag_holdout_loss_before", "diag_holdout_loss_after", "diag_meta_grad_norm"):
        assert torch.isfinite(torch.tensor(last[k])), k
    assert all(torch.isfinite(v).all() for v in out.model_state.values())


def test_rough_cost_relative_to_base(tmp_path, capsys):
    """Printed, not asserted: seconds per training step, pseudo_label vs pseudo_label+l2i_o."""
    rates = {}
    for algorithm in ("pseudo_label", "pseudo_label+l2i_o"):
        hp = {"threshold": 0.0} if algorithm == "pseudo_label" else {"threshold": 0.0, "holdout_batch": 8}
        cfg = RunConfig.from_dict(dict(dataset="digits", algorithm=algorithm, network="cnn_small", n_labels=50,
                                       steps=20, eval_every=20, batch_labeled=8, batch_unlabeled=16,
                                       optim={"lr": 0.05}, hparams=hp))
        out = train_run(cfg, RunEnv(str(tmp_path)), write=False)
        assert out.status == "ok"
        rates[algorithm] = 1.0 / out.run_row["steps_per_s"]
    with capsys.disabled():
        print(f"\n[l2i cost] s/step: {rates}, ratio {rates['pseudo_label+l2i_o'] / rates['pseudo_label']:.2f}")


# -- data parallelism: 2 gloo workers with half batches == 1 worker (BN-free, float64) ----------
DP_CASES = [("pseudo_label+l2i_o", {}), ("pseudo_label+l2i_o", {"meta_method": "approx", "l2i_inner_steps": 2}),
            ("mean_teacher+l2i_l", {}), ("mean_teacher+l2i_l", {"meta_method": "jvp"}),
            ("pseudo_label+l2i_o", {"l2i_inner_loss": "mse_views", "l2i_meta_path": "total"}),
            ("mean_teacher+l2i_o", {"l2i_inner_loss": "mse_views", "l2i_meta_path": "z_hessian", "l2i_inner_steps": 2}),
            ("mixmatch+l2i_l", {"l2i_inner_loss": "mse_views", "meta_method": "jvp"})]


def _dp_steps(comm) -> list[dict]:
    """Two iterations of every case on ``comm``; parameters and diagnostics after them."""
    from algorithms import Stepper

    results = []
    for algorithm, hp in DP_CASES:
        algo, batch = _setup(algorithm, {**hp, "l2i_inner_lr_scale": 5.0})
        algo.ctx.comm = comm
        opt = torch.optim.SGD(algo.model.parameters(), lr=0.1, momentum=0.9)
        stepper = Stepper(algo.model, opt, None, comm)
        batch = Batch(batch.x_l, batch.y_l, batch.x_u, None, torch.cat([batch.x_h, batch.x_h[:1]]),
                      torch.cat([batch.y_h, batch.y_h[:1]]))  # even hold-out batch (6)
        diags = [algo.train_step(batch, t, stepper) for t in range(2)]
        results.append(({n: p.detach().clone() for n, p in algo.model.named_parameters()}, diags[-1]))
    return results


def test_two_workers_equal_one_worker():
    from algorithms import Comm

    (got0, got1), single = run_workers(_dp_steps, meanwhile=lambda: _dp_steps(Comm()))
    for case, (ref_params, ref_diag), (p0, d0), (p1, d1) in zip(DP_CASES, single, got0, got1):
        for n, v in ref_params.items():
            assert (p0[n] == p1[n]).all(), (case, n)
            torch.testing.assert_close(torch.from_numpy(p0[n]), v, rtol=1e-9, atol=1e-11, msg=f"{case} {n}")
        for k in ("holdout_loss_before", "holdout_loss_after", "meta_grad_norm", "label_correction"):
            if k in ref_diag:
                assert abs(d0[k] - float(ref_diag[k])) <= 1e-8 * max(1.0, abs(float(ref_diag[k]))), (case, k, d0[k], ref_diag[k])


# -- the second update's optimizer: shared moments (papers, official code) or its own ----------
def _adam_stepper(model, lr=0.01):
    from algorithms import Comm, Stepper

    opt = torch.optim.Adam(model.parameters(), lr=lr)
    return Stepper(model, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.5 ** t), Comm())


@pytest.mark.parametrize("rule", ["l2i_o", "l2i_l"])
def test_separate_meta_optimizer_is_a_fresh_adam_step_on_the_meta_gradient(rule):
    """With ``separate``, the second update of iteration 0 is Adam's first step from empty
    moments: -lr * g / (|g| + eps) elementwise for the meta-gradient g (Adam's closed form at
    t = 1), at the schedule's current lr; with ``shared`` it is not (it carries the first
    update's moments)."""
    moves = {}
    for mode in ("separate", "shared"):
        algo, batch = _setup(f"pseudo_label+{rule}", {"l2i_meta_optimizer": mode})
        stepper = _adam_stepper(algo.model)
        base_algo, _ = _setup("pseudo_label")
        base_stepper = _adam_stepper(base_algo.model)
        s = base_algo.prepare(batch, 0)  # the base's own first update, replayed on a twin model
        base_stepper.step(base_algo.labeled_losses(s.logits_l, s).mean() + s.weight * base_algo.unlabeled_losses(
            s.logits_u, s).mean(), advance_schedule=False)
        algo.train_step(batch, 0, stepper)
        after_base = dict(base_algo.model.named_parameters())
        moves[mode] = {n: (p.detach() - after_base[n].detach()) for n, p in algo.model.named_parameters()}
        if mode == "separate":
            # the meta-gradient the second update used is left in .grad by the stepper
            for n, p in algo.model.named_parameters():
                expected = -0.01 * p.grad / (p.grad.abs() + 1e-8)
                assert torch.allclose(moves[mode][n], expected, atol=1e-12, rtol=1e-9), n
            assert stepper.scheduler.last_epoch == 1
            state = algo.state_dict()["rule"]["meta_optimizer"]
            assert state["state"] and all(int(v["step"]) == 1 for v in state["state"].values())
    assert any(not torch.allclose(moves["separate"][n], moves["shared"][n]) for n in moves["shared"])


def test_separate_meta_optimizer_resumes_from_checkpoint(tmp_path):
    from tests.resume_helpers import Stop, StopAt, last_checkpoint

    cfg = RunConfig.from_dict(dict(
        dataset="two_circles", algorithm="pseudo_label+l2i_o", network="mlp", n_labels=50, steps=40, eval_every=10,
        batch_labeled=16, batch_unlabeled=32, optim={"name": "adam", "lr": 0.01, "schedule": "constant"},
        hparams={"holdout_batch": 8, "l2i_meta_optimizer": "separate", "l2i_inner_lr_scale": 5.0}))
    full = train_run(cfg, RunEnv(str(tmp_path / "full")), write=False)
    env = RunEnv(str(tmp_path / "res"), checkpoint_every_min=0)  # a checkpoint in the store after every step
    with pytest.raises(Stop):
        train_run(cfg, env, reporter=StopAt(20))
    mid = last_checkpoint(env, cfg.resolved().run_id)
    assert mid["step"] == 19 and mid["algo"]["rule"]["meta_optimizer"]["state"]
    resumed = train_run(cfg, env)
    assert resumed.run_row["resumed_from_step"] == 19
    assert resumed.status == full.status == "ok"
    for k in full.model_state:
        assert torch.allclose(full.model_state[k], resumed.model_state[k], atol=1e-6), k
