"""Meta-Semi (paper 002, Alg. 1, Eq. 7-13) against an explicit virtual step and double backward.

The reference meta-gradient is the paper's definition: theta_1(w) = theta - alpha * grad_theta
sum_j w_j L_j(theta), G(theta_1(w)) differentiated w.r.t. w at w = 0 by autograd (second
order), fully independent of the forward-mode primitive the implementation uses. G is the
cross-entropy on the mixed labeled batch X_tilde (Alg. 1 lines 9-10, App. B Eq. 38); one
training step is checked against Alg. 1 lines 6-13 written out by hand (the update on L_meta
alone, Eq. 52).
"""
import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

import algorithms.meta_semi as meta_semi_module
from algorithms import Batch, Stepper, TrainContext, get_algorithm, losses, parse_hparams
from algorithms.meta import directional_derivatives, loss_gradient, sign_weights
from algorithms.meta_semi import MetaSemi
from algorithms.networks import build_network

C = 10
SHAPE = (1, 8, 8)
B_L, B_U = 6, 10


def _setup(seed=0, beta=0.5, net="cnn_small", name="meta_semi", **hp):
    torch.manual_seed(seed)
    model = build_network(net, SHAPE, C).double()
    g = torch.Generator().manual_seed(seed + 100)
    x_l = torch.randn(B_L, *SHAPE, generator=g, dtype=torch.float64)
    y_l = torch.randint(0, C, (B_L,), generator=g)
    x_u = torch.randn(B_U, *SHAPE, generator=g, dtype=torch.float64)
    ctx = TrainContext(C, 100, generator=torch.Generator().manual_seed(seed + 200))  # identity augment
    cls = get_algorithm(name)
    algo = cls(model, parse_hparams(name, {"beta": beta, "ema_decay": 0.9, **hp}), ctx)
    with torch.no_grad():  # the student away from its EMA copy: no pseudo-label equals the prediction (no exact ties)
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return algo, Batch(x_l, y_l, x_u)


def _params(model):
    return {n: p.detach().clone().requires_grad_(True) for n, p in model.named_parameters()}


def _virtual_steps_meta_gradient(model, x_g, y_g, u_mix, u_targets, alpha, steps=1):
    """d G(theta_M(w)) / d w at w = 0 with theta_m = theta_{m-1} - alpha grad sum_j w_j L_j(theta_{m-1}),
    G = sum_i L(y_g_i, p(x_g_i | theta_M)) (Alg. 1 lines 6-10)."""
    theta = _params(model)
    names = list(theta)
    w = torch.zeros(u_mix.shape[0], dtype=u_mix.dtype, requires_grad=True)
    cur = dict(theta)
    for _ in range(steps):
        per = losses.soft_cross_entropy(functional_call(model, cur, (u_mix,)), u_targets)
        grads = torch.autograd.grad((w * per).sum(), [cur[n] for n in names], create_graph=True)
        cur = {n: cur[n] - alpha * g for n, g in zip(names, grads)}
    G = losses.soft_cross_entropy(functional_call(model, cur, (x_g,)), y_g).sum()
    (dw,) = torch.autograd.grad(G, w)
    return dw.detach()


def _hand_ce(model, x, t):
    with torch.no_grad():
        return -(t * torch.log(torch.softmax(model(x), dim=1))).sum(1)


@pytest.mark.parametrize("seed", [2, 4])
def test_weights_are_sign_of_explicit_virtual_step_meta_gradient(seed):
    algo, batch = _setup(seed)
    x_l, y1h, x_mix, y_mix, u_mix, u_t = algo.mixed_batches(batch)
    alpha = 0.1
    meta = _virtual_steps_meta_gradient(algo.model, x_mix, y_mix, u_mix, u_t, alpha)
    w_ref = (meta <= 0).double()
    assert 0 < w_ref.sum() < w_ref.numel(), "pick a seed with mixed signs so the test discriminates"
    # the primitive, as Meta-Semi calls it (G as a mean: the batch size does not change a sign)
    v = loss_gradient(algo.model, losses.soft_cross_entropy, x_mix, y_mix)
    d = directional_derivatives(algo.model, losses.soft_cross_entropy, u_mix, u_t, v, method="jvp")
    torch.testing.assert_close(-alpha * B_L * d, meta, rtol=1e-5, atol=1e-12)
    assert torch.equal(sign_weights(d), w_ref)
    # Eq. 9's tie: a zero meta-gradient keeps the sample
    assert torch.equal(sign_weights(torch.tensor([0.0, -1e-30, 1e-30])), torch.tensor([1.0, 0.0, 1.0]))


def test_proposition_1_m_virtual_steps_scale_the_one_step_meta_gradient():
    algo, batch = _setup(3)
    _, _, x_mix, y_mix, u_mix, u_t = algo.mixed_batches(batch)
    one = _virtual_steps_meta_gradient(algo.model, x_mix, y_mix, u_mix, u_t, 0.05, steps=1)
    three = _virtual_steps_meta_gradient(algo.model, x_mix, y_mix, u_mix, u_t, 0.05, steps=3)
    torch.testing.assert_close(three, 3 * one, rtol=1e-8, atol=1e-14)
    assert torch.equal(three <= 0, one <= 0)


def _run_loss_terms(algo, batch):
    """mixed_batches and loss_terms from the same generator state (loss_terms draws them again)."""
    state = algo.ctx.generator.get_state()
    mixed = algo.mixed_batches(batch)
    algo.ctx.generator.set_state(state)
    terms = algo.loss_terms(batch, 0)
    return mixed, terms


@pytest.mark.parametrize("seed", [2, 4])
def test_loss_terms_kept_fraction_and_weighted_meta_loss(seed):
    """The paper's update: L_meta alone, weights from G on X_tilde."""
    algo, batch = _setup(seed)
    (x_l, y1h, x_mix, y_mix, u_mix, u_t), terms = _run_loss_terms(algo, batch)
    w = (_virtual_steps_meta_gradient(algo.model, x_mix, y_mix, u_mix, u_t, 0.1) <= 0).double()
    L = _hand_ce(algo.model, u_mix, u_t)
    assert terms.diagnostics["kept_fraction"] == pytest.approx(float(w.mean()), abs=1e-12)
    assert float(terms.unlabeled.detach()) == pytest.approx(float((w * L).sum() / w.sum()), rel=1e-9)
    assert float(terms.labeled) == 0.0 and terms.weight == 1.0
    assert terms.unlabeled.requires_grad


# seeds where G on X and G on X_tilde weigh some sample differently (at initialisation the two
# gradients are close: most seeds give the same signs)
DISCRIMINATING = [(6, 1.0), (11, 0.5)]


@pytest.mark.parametrize("seed,beta", DISCRIMINATING)
def test_earlier_version_g_on_clean_x_plus_mixed_cross_entropy(seed, beta):
    """meta_objective clean, labeled_weight 1: G on X and CE(X_tilde) + L_meta (the old behaviour, by name)."""
    algo, batch = _setup(seed, beta=beta, meta_objective="clean", labeled_weight=1.0)
    (x_l, y1h, x_mix, y_mix, u_mix, u_t), terms = _run_loss_terms(algo, batch)
    w = (_virtual_steps_meta_gradient(algo.model, x_l, y1h, u_mix, u_t, 0.1) <= 0).double()
    w_paper = (_virtual_steps_meta_gradient(algo.model, x_mix, y_mix, u_mix, u_t, 0.1) <= 0).double()
    assert not torch.equal(w, w_paper), "G's batch changes the weights here, so the test discriminates"
    L = _hand_ce(algo.model, u_mix, u_t)
    assert terms.diagnostics["kept_fraction"] == pytest.approx(float(w.mean()), abs=1e-12)
    assert float(terms.unlabeled.detach()) == pytest.approx(float((w * L).sum() / w.sum()), rel=1e-9)
    assert float(terms.labeled.detach()) == pytest.approx(float(_hand_ce(algo.model, x_mix, y_mix).mean()), rel=1e-9)
    assert terms.weight == 1.0 and terms.unlabeled.requires_grad and terms.labeled.requires_grad


def _hand_algorithm_1_step(model, x_g, y_g, u_mix, u_targets, alpha, weights="sign"):
    """Alg. 1 lines 6-13 by hand: w = 0 and a virtual step theta_1 = theta - alpha grad sum w_j L_j,
    the meta-gradient dG(theta_1)/dw, w_j = 1 where it is <= 0 (Eq. 9; ``l2rw``: Ren et al.'s
    max(-meta-gradient, 0)), L_meta = sum w L / sum w, theta_t+1 = theta_t - alpha grad L_meta.
    Returns the parameters after the step, by name."""
    meta = _virtual_steps_meta_gradient(model, x_g, y_g, u_mix, u_targets, alpha)
    w = (meta <= 0).double() if weights == "sign" else (-meta).clamp(min=0)
    theta = _params(model)
    per = losses.soft_cross_entropy(functional_call(model, theta, (u_mix,)), u_targets)
    l_meta = (w * per).sum() / w.sum()
    grads = torch.autograd.grad(l_meta, list(theta.values()))
    return {n: t.detach() - alpha * g for (n, t), g in zip(theta.items(), grads)}, w


@pytest.mark.parametrize("name,seed,beta", [("meta_semi", 6, 1.0), ("meta_semi", 2, 0.5), ("meta_semi_l2rw", 4, 0.5)])
def test_one_training_step_equals_algorithm_1_by_hand(name, seed, beta):
    alpha = 0.1
    algo, batch = _setup(seed, beta=beta, name=name)
    state = algo.ctx.generator.get_state()
    x_l, y1h, x_mix, y_mix, u_mix, u_t = algo.mixed_batches(batch)
    algo.ctx.generator.set_state(state)
    kind = "sign" if name == "meta_semi" else "l2rw"
    expected, w = _hand_algorithm_1_step(algo.model, x_mix, y_mix, u_mix, u_t, alpha, kind)
    assert 0 < int((w > 0).sum()) < w.numel()
    if (seed, beta) in DISCRIMINATING:  # the earlier version's step differs here
        clean, _ = _hand_algorithm_1_step(algo.model, x_l, y1h, u_mix, u_t, alpha, kind)
        assert any(not torch.allclose(clean[n], expected[n]) for n in expected)
    stepper = Stepper(algo.model, torch.optim.SGD(algo.model.parameters(), lr=alpha), None, algo.ctx.comm)
    algo.train_step(batch, 0, stepper)
    for n, p in algo.model.named_parameters():
        torch.testing.assert_close(p.detach(), expected[n], rtol=1e-10, atol=1e-12, msg=n)


def test_l2rw_weight_rule_is_normalised_positive_part():
    algo, batch = _setup(9, weight_rule="l2rw")
    (x_l, y1h, x_mix, y_mix, u_mix, u_t), terms = _run_loss_terms(algo, batch)
    r = (-_virtual_steps_meta_gradient(algo.model, x_mix, y_mix, u_mix, u_t, 0.1)).clamp(min=0)
    assert 0 < int((r > 0).sum()) < r.numel() and len(set(r[r > 0].tolist())) > 1  # not 0/1 weights
    L = _hand_ce(algo.model, u_mix, u_t)
    assert float(terms.unlabeled.detach()) == pytest.approx(float((r / r.sum() * L).sum()), rel=1e-9)
    assert terms.diagnostics["kept_fraction"] == pytest.approx(float((r > 0).double().mean()), abs=1e-12)
    # meta_semi_l2rw is this option under its own name, and nothing else
    twin, _ = _setup(9, name="meta_semi_l2rw")
    assert twin.hp.weight_rule == "l2rw"
    assert float(_run_loss_terms(twin, batch)[1].unlabeled.detach()) == float(terms.unlabeled.detach())


@pytest.mark.parametrize("sign,expect_kept", [(-1.0, 0.0), (1.0, 1.0)])
def test_loss_terms_all_or_none_kept(monkeypatch, sign, expect_kept):
    """No w_j = 1: L_meta = 0 (not NaN); all kept: L_meta = plain mean."""
    algo, batch = _setup(4)
    monkeypatch.setattr(meta_semi_module, "directional_derivatives",
                        lambda model, fn, x, t, v, *a, **k: torch.full((x.shape[0],), sign, dtype=x.dtype))
    (_, _, _, _, u_mix, u_t), terms = _run_loss_terms(algo, batch)
    assert terms.diagnostics["kept_fraction"] == expect_kept
    expected = float(_hand_ce(algo.model, u_mix, u_t).mean()) if expect_kept else 0.0
    assert float(terms.unlabeled.detach()) == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert torch.isfinite(terms.total())


def _solve_mixup(mixed, source):
    """Recover (lam, perm) with mixed[i] = lam source[i] + (1 - lam) source[perm[i]] by least squares."""
    src = source.flatten(1)
    mix = mixed.flatten(1)
    lams = []
    for i in range(src.shape[0]):
        for k in range(src.shape[0]):
            if k == i:
                continue
            diff = src[i] - src[k]
            lam = float(((mix[i] - src[k]) @ diff) / (diff @ diff))
            if (mix[i] - src[k] - lam * diff).norm() < 1e-9 * mix[i].norm():
                lams.append(lam)
    assert lams, "no row is a mix of two distinct source rows"
    lam = sorted(lams)[len(lams) // 2]
    assert max(abs(a - lam) for a in lams) < 1e-9
    resid = torch.stack([(mix - lam * src - (1 - lam) * src[k]).norm(dim=1) for k in range(src.shape[0])], dim=1)
    perm = resid.argmin(dim=1)
    assert resid.min(dim=1).values.max() < 1e-9
    return lam, perm


def test_mixup_of_labeled_and_pseudo_labeled_batches():
    algo, batch = _setup(5, beta=1.0)
    x_l, y1h, x_mix, y_mix, u_mix, u_t = algo.mixed_batches(batch)
    # identity augment: X is the batch itself, one-hot labels
    torch.testing.assert_close(x_l, batch.x_l)
    torch.testing.assert_close(y1h, F.one_hot(batch.y_l, C).double())
    # pseudo-labels: softmax of the EMA model (a copy of the initial weights) in eval mode
    ref_model = copy.deepcopy(algo.ema.model).eval()
    with torch.no_grad():
        y_hat = torch.softmax(ref_model(batch.x_u), dim=1)
    W = torch.cat([batch.x_l, batch.x_u])
    Y = torch.cat([y1h, y_hat])
    lam2, perm2 = _solve_mixup(u_mix, W)
    assert 0.0 < lam2 < 1.0
    assert sorted(perm2.tolist()) == list(range(W.shape[0])), "the partner index is a permutation"
    torch.testing.assert_close(u_mix, lam2 * W + (1 - lam2) * W[perm2])
    torch.testing.assert_close(u_t, lam2 * Y + (1 - lam2) * Y[perm2])
    torch.testing.assert_close(u_t.sum(1), torch.ones(W.shape[0], dtype=u_t.dtype))
    # X_tilde mixes X with a shuffle of X (Eq. 12)
    lam1, perm1 = _solve_mixup(x_mix, batch.x_l)
    assert sorted(perm1.tolist()) == list(range(B_L))
    torch.testing.assert_close(y_mix, lam1 * y1h + (1 - lam1) * y1h[perm1])


def test_train_step_updates_ema_and_leaves_no_nan():
    algo, batch = _setup(6)
    model = algo.model
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    stepper = Stepper(model, opt, None, algo.ctx.comm)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    ema_before = {n: p.detach().clone() for n, p in algo.ema.model.named_parameters()}
    diag = algo.train_step(batch, 0, stepper)
    assert all(math.isfinite(float(v)) for v in diag.values())
    d = min(0.9, 1 / 10)
    for n, p in algo.ema.model.named_parameters():
        torch.testing.assert_close(p, d * ema_before[n] + (1 - d) * dict(model.named_parameters())[n].detach())
    assert any(not torch.equal(before[n], p) for n, p in model.named_parameters())


# -- Meta-Semi + ICT (002 Eq. 14) ---------------------------------------------------------------
def _setup_ict(seed, ict_weight, ict_alpha=1.0):
    """As _setup, with the ICT term, and the student moved away from its EMA teacher (a copy of
    the initial weights, returned) so that teacher and student predictions differ."""
    torch.manual_seed(seed)
    model = build_network("cnn_small", SHAPE, C).double()
    g = torch.Generator().manual_seed(seed + 100)
    batch = Batch(torch.randn(B_L, *SHAPE, generator=g, dtype=torch.float64), torch.randint(0, C, (B_L,), generator=g),
                  torch.randn(B_U, *SHAPE, generator=g, dtype=torch.float64))
    ctx = TrainContext(C, 100, generator=torch.Generator().manual_seed(seed + 200))
    hp = parse_hparams("meta_semi", {"beta": 0.5, "ema_decay": 0.9, "ict_weight": ict_weight, "ict_alpha": ict_alpha})
    algo = MetaSemi(model, hp, ctx)
    teacher = copy.deepcopy(model).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return algo, batch, teacher


def test_ict_term_equals_hand_computed_ict_loss():
    w_ict = 2.5
    algo, batch, teacher = _setup_ict(7, w_ict, ict_alpha=0.7)
    seen = []
    hook = algo.model.register_forward_hook(lambda mod, args, out: seen.append(args[0].detach()))
    (x_l, y1h, x_mix, y_mix, u_mix, u_t), terms = _run_loss_terms(algo, batch)
    hook.remove()
    n_all = (B_L + B_U) + B_U  # U_tilde and the ICT batch; X_tilde only enters G (the update is L_meta + w L_ict)
    (student_in,) = [x for x in seen if x.shape[0] == n_all]
    torch.testing.assert_close(student_in[:B_L + B_U], u_mix)
    u_ict = student_in[B_L + B_U:]
    lam3, perm3 = _solve_mixup(u_ict, batch.x_u)  # identity augmentation: u is the batch itself
    assert 0.0 < lam3 < 1.0 and sorted(perm3.tolist()) == list(range(B_U))
    with torch.no_grad():
        y_hat = torch.softmax(teacher(batch.x_u), dim=1)  # the EMA teacher (not the moved student)
        z = lam3 * y_hat + (1 - lam3) * y_hat[perm3]
        hand_ict = ((torch.softmax(algo.model(u_ict), dim=1) - z) ** 2).sum(1).mean()
    w = (_virtual_steps_meta_gradient(algo.model, x_mix, y_mix, u_mix, u_t, 0.1) <= 0).double()
    L = _hand_ce(algo.model, u_mix, u_t)
    l_meta = float((w * L).sum() / w.sum())
    assert terms.diagnostics["loss_ict"] == pytest.approx(float(hand_ict), rel=1e-9)
    assert terms.diagnostics["loss_meta"] == pytest.approx(l_meta, rel=1e-9)
    assert float(terms.unlabeled.detach()) == pytest.approx(l_meta + w_ict * float(hand_ict), rel=1e-9)
    assert float(hand_ict) > 1e-4, "teacher and student differ, so the term is not trivially 0"
    assert float(terms.labeled) == 0.0


def test_ict_off_leaves_generator_and_step_unchanged():
    """ict_weight = 0: no extra generator draw, ict_alpha irrelevant, diagnostics as before."""
    results = []
    for ict_alpha in (1.0, 0.3):
        algo, batch, _ = _setup_ict(8, 0.0, ict_alpha)
        state = algo.ctx.generator.get_state()
        algo.mixed_batches(batch)
        after_draws = algo.ctx.generator.get_state()
        algo.ctx.generator.set_state(state)
        stepper = Stepper(algo.model, torch.optim.SGD(algo.model.parameters(), lr=0.05), None, algo.ctx.comm)
        diag = algo.train_step(batch, 0, stepper)
        assert torch.equal(algo.ctx.generator.get_state(), after_draws)
        assert set(diag) == {"loss", "loss_labeled", "loss_unlabeled", "unlabeled_weight", "kept_fraction"}
        results.append([p.detach().clone() for p in algo.model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*results))
    # with the term on, the generator moves further (ICT's own lam and permutation)
    algo, batch, _ = _setup_ict(8, 1.0)
    state = algo.ctx.generator.get_state()
    algo.mixed_batches(batch)
    after_draws = algo.ctx.generator.get_state()
    algo.ctx.generator.set_state(state)
    algo.loss_terms(batch, 0)
    assert not torch.equal(algo.ctx.generator.get_state(), after_draws)


def test_ict_hparams_are_validated():
    from algorithms import ConfigError

    with pytest.raises(ConfigError):
        parse_hparams("meta_semi", {"ict_weight": -1.0})
    with pytest.raises(ConfigError):
        parse_hparams("meta_semi", {"ict_alpha": 0.0})
