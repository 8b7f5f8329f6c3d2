"""The reweighting meta rules ``meta_semi`` (002 Eq. 7-10) and ``l2rw`` (Learning to Reweight,
002 App. D) on composable bases, against independent computations: per-sample gradients by a
loop of autograd.grad, explicit virtual SGD steps differentiated w.r.t. the sample weights
(second order), hand-written losses. Small double-precision MLPs (no batch coupling, so
per-sample losses are well defined) and a BN CNN for the BatchNorm check.
"""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

import algorithms.rules._reweight as reweight_module
from algorithms import Batch, Stepper, TrainContext, get_algorithm, parse_hparams
from algorithms.meta.rule import StepInfo
from algorithms.networks import build_network

C, D = 4, 5
MEDIAN = "median"  # threshold placeholder: halfway between the middle confidences of x_u
B_L, B_U = 6, 12


def _hand_soft_ce(logits, z):
    return -(z * torch.log(torch.softmax(logits, dim=1))).sum(1)


def _hand_sq(logits, z):
    return ((torch.softmax(logits, dim=1) - z) ** 2).sum(1)


HAND_DISTANCE = {"pseudo_label": _hand_soft_ce, "mean_teacher": _hand_sq, "fixmatch": _hand_soft_ce}


def _setup(base, rule, seed=0, net="mlp", shape=(D,), rule_hp=None, base_hp=None):
    """(algorithm, global batch) with a double model; the student is perturbed away from its
    EMA teacher (mean_teacher) so the targets are not the student's own predictions."""
    torch.manual_seed(seed)
    model = build_network(net, shape, C).double()
    g = torch.Generator().manual_seed(seed + 100)
    x_l = torch.randn(B_L, *shape, generator=g, dtype=torch.float64)
    y_l = torch.randint(0, C, (B_L,), generator=g)
    x_u = torch.randn(B_U, *shape, generator=g, dtype=torch.float64) * 2
    ctx = TrainContext(C, 100, generator=torch.Generator().manual_seed(seed + 200))  # identity augmentations
    hp = {"rampup": "none", "lambda_u": 1.3, **(base_hp or {})}
    if base in ("pseudo_label", "fixmatch") and hp.get("threshold", MEDIAN) == MEDIAN:
        hp["threshold"] = 0.0  # set after the perturbation below when MEDIAN
    if base == "mean_teacher":
        hp["ema_decay"] = 0.9
    name = f"{base}+{rule}" if rule else base
    algo = get_algorithm(name)(model, parse_hparams(name, {**hp, **(rule_hp or {})}), ctx)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
        if base in ("pseudo_label", "fixmatch") and (base_hp or {}).get("threshold") == MEDIAN:
            # a threshold between the confidences, so the base masks some samples out and keeps others
            conf = torch.softmax(model(x_u), dim=1).max(dim=1).values.sort().values
            algo.hp.threshold = float(conf[B_U // 2 - 1] + conf[B_U // 2]) / 2
    return algo, Batch(x_l, y_l, x_u)


def _prepare(algo, batch, step=50):
    """The base's StepInputs without consuming the generator (the rule draws them again)."""
    state = algo.ctx.generator.get_state()
    s = algo.prepare(batch, step)
    algo.ctx.generator.set_state(state)
    return s


def _meta_weights(algo, s, step=50):
    """The rule's meta step on prepared inputs: (w, d, v, diagnostics)."""
    r = algo.rule.meta_step(s, None, StepInfo(step, 0.1))
    return r.w, r.d, r.v, r.diagnostics


def _loss_terms(algo, batch, step=50):
    """The rule's loss terms as the template builds them (prepare, meta step, loss terms)."""
    s = algo.prepare(batch, step)
    info = StepInfo(step, 0.1)
    return algo.rule.loss_terms(s, algo.rule.meta_step(s, batch, info), info)


def _brute(model, s, dist):
    """(<g_G, g_j> for every unlabeled sample j by a loop of autograd.grad, g_G as a list).

    G = mean hard cross-entropy on the labeled shard; L_j = mask_j * dist(f(x_u_j), z_j)."""
    params = list(model.parameters())
    G = F.cross_entropy(model(s.x_l), s.y_l)
    g_G = torch.autograd.grad(G, params)
    out = []
    for j in range(s.x_u_student.shape[0]):
        L_j = s.mask[j] * dist(model(s.x_u_student[j:j + 1]), s.targets[j:j + 1])[0]
        g_j = torch.autograd.grad(L_j, params)
        out.append(sum((a * b).sum() for a, b in zip(g_G, g_j)))
    return torch.stack(out).detach(), g_G


def _ref_weights(rule, dots):
    if rule == "meta_semi":
        keep = (dots >= 0).double()
        return keep / keep.sum().clamp(min=1.0)
    r = dots.clamp(min=0)
    return r / r.sum() if r.sum() > 0 else torch.zeros_like(r)


# -- (a) directional derivatives and weights against brute force ------------------------------------
@pytest.mark.parametrize("rule", ["meta_semi", "l2rw"])
@pytest.mark.parametrize("base,base_hp", [("pseudo_label", {"threshold": MEDIAN}), ("mean_teacher", {})])
def test_directional_derivatives_and_weights_match_brute_force(rule, base, base_hp):
    algo, batch = _setup(base, rule, seed=1, base_hp=base_hp)
    s = _prepare(algo, batch)
    dots, g_G = _brute(algo.model, s, HAND_DISTANCE[base])
    assert (dots > 0).any() and (dots < 0).any(), "mixed signs, or the test does not discriminate"
    if base == "pseudo_label":
        assert 0 < float(s.mask.sum()) < B_U, "the threshold must mask some samples out"
    w, d, v, diag = _meta_weights(algo, s)
    torch.testing.assert_close(d, dots, rtol=1e-5, atol=1e-12 * float(dots.abs().max()))
    torch.testing.assert_close(w, _ref_weights(rule, dots), rtol=1e-9, atol=1e-12)
    assert float(diag["meta_grad_norm"]) == pytest.approx(math.sqrt(sum(float((g ** 2).sum()) for g in g_G)), rel=1e-9)
    # masked-out samples weigh nothing in the loss: their directional derivative is exactly 0
    assert torch.all(d[s.mask == 0] == 0)


@pytest.mark.parametrize("rule", ["meta_semi", "l2rw"])
def test_finite_differences_give_the_same_weights_away_from_ties(rule):
    algo, batch = _setup("pseudo_label", rule, seed=2, rule_hp={"meta_method": "fd"}, base_hp={"threshold": MEDIAN})
    s = _prepare(algo, batch)
    dots, _ = _brute(algo.model, s, _hand_soft_ce)
    w, d, _, _ = _meta_weights(algo, s)
    away = dots.abs() > 1e-3 * dots.abs().max()
    assert int(away.sum()) >= 4 and (dots[away] > 0).any() and (dots[away] < 0).any()
    assert torch.equal(d[away] >= 0, dots[away] >= 0)
    assert torch.all(d[s.mask == 0] == 0)  # masked-out samples: exact ties in fd too
    if rule == "meta_semi":
        torch.testing.assert_close(w, _ref_weights(rule, dots))
    else:  # O(eps^2) differences, normalised
        torch.testing.assert_close(w, _ref_weights(rule, dots), rtol=1e-3, atol=1e-6)


def test_l2rw_weights_are_a_distribution():
    for seed in range(3):
        algo, batch = _setup("mean_teacher", "l2rw", seed=seed)
        s = _prepare(algo, batch)
        w, d, _, diag = _meta_weights(algo, s)
        assert torch.all(w >= 0)
        assert float(w.sum()) == pytest.approx(1.0, abs=1e-12)
        assert torch.equal(w > 0, d > 0)
        p = w[w > 0]
        assert diag["weight_entropy"] == pytest.approx(float(-(p * p.log()).sum()), rel=1e-9)
        assert diag["ess_fraction"] == pytest.approx(float(1 / (w ** 2).sum()) / B_U, rel=1e-9)
        assert diag["positive_fraction"] == pytest.approx(float((d > 0).double().mean()))


# -- (b) Proposition 1: M virtual steps give the one-step signs --------------------------------------
def _virtual_meta_gradient(model, s, dist, alpha, steps):
    """d G(theta_M(w)) / d w at w = 0, theta_m = theta_{m-1} - alpha grad sum_j w_j L_j(theta_{m-1})
    (002 Eq. 4-5), by double backward through explicit steps on plain parameter tensors."""
    theta = {n: p.detach().clone().requires_grad_(True) for n, p in model.named_parameters()}
    w = torch.zeros(s.x_u_student.shape[0], dtype=s.x_u_student.dtype, requires_grad=True)
    cur = dict(theta)
    for _ in range(steps):
        per = s.mask * dist(functional_call(model, cur, (s.x_u_student,)), s.targets)
        grads = torch.autograd.grad((w * per).sum(), list(cur.values()), create_graph=True)
        cur = {n: t - alpha * g for (n, t), g in zip(cur.items(), grads)}
    G = F.cross_entropy(functional_call(model, cur, (s.x_l,)), s.y_l)
    (dw,) = torch.autograd.grad(G, w)
    return dw.detach()


@pytest.mark.parametrize("rule", ["meta_semi", "l2rw"])
def test_proposition_1_m_virtual_steps_same_weights_as_one(rule):
    """002 Prop. 1 (Eq. 8 / 17): at w = 0 the M-step meta-gradient is M times the one-step one,
    so the signs (Meta-Semi) and the normalised positive parts (L2RW) do not depend on M."""
    algo, batch = _setup("pseudo_label", rule, seed=3, base_hp={"threshold": MEDIAN})
    s = _prepare(algo, batch)
    alpha = 0.01
    one = _virtual_meta_gradient(algo.model, s, _hand_soft_ce, alpha, 1)
    w_rule, d, _, _ = _meta_weights(algo, s)
    torch.testing.assert_close(-alpha * d, one, rtol=1e-6, atol=1e-14)  # Eq. 10
    assert (one < 0).any() and (one > 0).any()
    for m in (2, 4):
        meta = _virtual_meta_gradient(algo.model, s, _hand_soft_ce, alpha, m)
        torch.testing.assert_close(meta, m * one, rtol=1e-8, atol=1e-15)
        torch.testing.assert_close(w_rule, _ref_weights(rule, -meta), rtol=1e-6, atol=1e-12)


# -- (c) the loss ----------------------------------------------------------------------------------
@pytest.mark.parametrize("rule", ["meta_semi", "l2rw"])
@pytest.mark.parametrize("base,base_hp", [("pseudo_label", {"threshold": MEDIAN}), ("mean_teacher", {})])
def test_rule_loss_equals_hand_weighted_loss(rule, base, base_hp):
    algo, batch = _setup(base, rule, seed=4, base_hp=base_hp)
    s = _prepare(algo, batch)
    dots, _ = _brute(algo.model, s, HAND_DISTANCE[base])
    w = _ref_weights(rule, dots)
    with torch.no_grad():
        c_t = F.cross_entropy(algo.model(s.x_l), s.y_l)
        L = s.mask * HAND_DISTANCE[base](algo.model(s.x_u_student), s.targets)
    terms = _loss_terms(algo, batch)
    assert terms.weight == pytest.approx(1.3)
    assert float(terms.labeled.detach()) == pytest.approx(float(c_t), rel=1e-10)
    assert float(terms.unlabeled.detach()) == pytest.approx(float((w * L).sum()), rel=1e-10)
    assert float(terms.total().detach()) == pytest.approx(float(c_t + 1.3 * (w * L).sum()), rel=1e-10)
    if rule == "meta_semi":  # sum_j w_j L_j / sum_j w_j with 0/1 weights, masked samples in the denominator
        keep = (dots >= 0).double()
        assert float(terms.unlabeled.detach()) == pytest.approx(float((keep * L).sum() / keep.sum()), rel=1e-10)
    assert terms.unlabeled.requires_grad


@pytest.mark.parametrize("rule", ["meta_semi", "l2rw"])
@pytest.mark.parametrize("sign", [-1.0, 1.0])
def test_all_or_none_positive(monkeypatch, rule, sign):
    """No positive direction: no unlabeled term (0, not NaN). All kept by Meta-Semi: exactly the
    base's own unlabeled term (its mean over the batch, masked samples included)."""
    algo, batch = _setup("pseudo_label", rule, seed=5, base_hp={"threshold": MEDIAN})
    monkeypatch.setattr(reweight_module, "directional_derivatives",
                        lambda model, fn, x, t, v, *a, **k: torch.full((x.shape[0],), sign, dtype=x.dtype))
    base_algo, _ = _setup("pseudo_label", None, seed=5, base_hp={"threshold": MEDIAN})
    base_terms = base_algo.loss_terms(batch, 50)
    terms = _loss_terms(algo, batch)
    assert torch.isfinite(terms.total())
    if sign < 0:
        assert float(terms.unlabeled.detach()) == 0.0
    elif rule == "meta_semi":
        assert float(terms.unlabeled.detach()) == pytest.approx(float(base_terms.unlabeled), rel=1e-12)
        assert float(base_terms.unlabeled) > 0
    # l2rw with equal positive weights: weight 1/N each, i.e. the base's mean too
    if sign > 0 and rule == "l2rw":
        assert float(terms.unlabeled.detach()) == pytest.approx(float(base_terms.unlabeled), rel=1e-12)


# -- diagnostics -----------------------------------------------------------------------------------
@pytest.mark.parametrize("rule", ["meta_semi", "l2rw"])
def test_diagnostics_and_assumption1_ratio(rule):
    algo, batch = _setup("pseudo_label", rule, seed=6, rule_hp={"diag_every": 2}, base_hp={"threshold": MEDIAN})
    s = _prepare(algo, batch, step=0)
    dots, g_G = _brute(algo.model, s, _hand_soft_ce)
    w = _ref_weights(rule, dots)
    params = list(algo.model.parameters())
    L_meta = (w * s.mask * _hand_soft_ce(algo.model(s.x_u_student), s.targets)).sum()
    g_meta = torch.autograd.grad(L_meta, params)
    ratio = sum(float((g ** 2).sum()) for g in g_meta) / sum(float((g ** 2).sum()) for g in g_G)
    stepper = Stepper(algo.model, torch.optim.SGD(algo.model.parameters(), lr=0.05), None, algo.ctx.comm)
    diag = algo.train_step(batch, 0, stepper)
    assert float(diag["assumption1_ratio"]) == pytest.approx(ratio, rel=1e-8)
    assert ratio > 0
    assert float(diag["mask_fraction"]) == pytest.approx(float(s.mask.mean()))
    if rule == "meta_semi":
        used = s.mask > 0
        assert diag["kept_fraction"] == pytest.approx(float((dots[used] >= 0).double().mean()))
        assert diag["kept_fraction_all"] == pytest.approx(float((dots >= 0).double().mean()))
    # step 1 is not a diagnostic step: the last value is carried, not recomputed
    diag1 = algo.train_step(batch, 1, stepper)
    assert diag1["assumption1_ratio"] == diag["assumption1_ratio"]
    assert all(math.isfinite(v) for v in diag1.values())


def test_meta_pass_leaves_batchnorm_statistics_untouched():
    for bn in ("train", "eval"):
        for rule in ("meta_semi", "l2rw"):
            algo, batch = _setup("mean_teacher", rule, net="cnn_small_bn", shape=(1, 8, 8), rule_hp={"meta_bn": bn})
            s = _prepare(algo, batch)
            before = {k: b.clone() for k, b in algo.model.named_buffers()}
            w, _, _, _ = _meta_weights(algo, s)
            assert torch.isfinite(w).all()
            for k, b in algo.model.named_buffers():
                assert torch.equal(b, before[k]), (bn, rule, k)


@pytest.mark.parametrize("rule", ["meta_semi", "l2rw"])
def test_one_step_moves_the_parameters_differently_from_the_base(rule):
    def step(name):
        algo, batch = _setup("pseudo_label", name, seed=7, base_hp={"threshold": MEDIAN})
        stepper = Stepper(algo.model, torch.optim.SGD(algo.model.parameters(), lr=0.1), None, algo.ctx.comm)
        start = [p.detach().clone() for p in algo.model.parameters()]
        algo.train_step(batch, 50, stepper)
        return [p.detach() - s for p, s in zip(algo.model.parameters(), start)]

    base, composed = step(None), step(rule)
    assert max(float((a - b).abs().max()) for a, b in zip(base, composed)) > 1e-6
    assert max(float(b.abs().max()) for b in composed) > 1e-6


# -- (f) through the engine on digits --------------------------------------------------------------
def _engine_config(name: str, steps: int = 20):
    from bench.config import RunConfig

    fields = {f.name for f in dataclasses.fields(get_algorithm(name).Hparams)}
    values = {"rampup": "none", "threshold": 0.0, "ema_decay": 0.9}
    return RunConfig.from_dict(dict(
        dataset="digits", algorithm=name, network="cnn_small", n_labels=50, steps=steps, eval_every=steps,
        ema_decay=0.9, batch_labeled=16, batch_unlabeled=48, optim={"lr": 0.05},
        hparams={k: v for k, v in values.items() if k in fields}))


@pytest.mark.parametrize("pair", ["pseudo_label+meta_semi", "mean_teacher+l2rw", "fixmatch+meta_semi"])
def test_pairs_train_through_the_engine(pair, tmp_path):
    from bench.config import RunEnv
    from bench.engine import train_run

    env = RunEnv(results_dir=str(tmp_path))
    out = train_run(_engine_config(pair), env, write=False)
    assert out.status == "ok", out.run_row["error_message"]
    assert out.eval_rows and all(math.isfinite(r["diag_loss"]) for r in out.eval_rows if "diag_loss" in r)
    assert any("diag_meta_grad_norm" in r for r in out.eval_rows)
    base = train_run(_engine_config(pair.split("+")[0]), env, write=False)
    assert base.status == "ok"
    diff = max(float((out.model_state[k].double() - base.model_state[k].double()).abs().max()) for k in base.model_state)
    assert diff > 1e-5, "the rule changed nothing"
