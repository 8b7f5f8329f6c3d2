"""VAT and ICT: their characteristic computations against hand-written ones.

VAT: the adversarial direction is the normalised Hessian-vector product of the KL (closed
form for a linear softmax model), has norm eps, and hurts more than random directions; the
loss is the KL written out by hand; +EntMin adds exactly the entropy; BatchNorm running
statistics see only the one clean forward. ICT: the mixed inputs and targets are lam/perm
mixtures of the teacher's predictions, the loss is the hand formula, the teacher is the EMA.
"""
import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from algorithms import Batch, ConfigError, Stepper, TrainContext, parse_hparams
from algorithms.ict import ICT
from algorithms.networks import build_network
from algorithms.vat import VAT

C = 10
SHAPE = (1, 8, 8)


def identity(x, g):
    return x


def make_batch(seed=0, b_l=8, b_u=16, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed + 1000)
    return Batch(torch.randn(b_l, *SHAPE, generator=g, dtype=dtype), torch.randint(0, C, (b_l,), generator=g),
                 torch.randn(b_u, *SHAPE, generator=g, dtype=dtype))


def make(cls, hp, network="cnn_small", seed=0, total_steps=100, model=None):
    torch.manual_seed(seed)
    if model is None:
        model = build_network(network, SHAPE, C)
    ctx = TrainContext(C, total_steps, augment=identity, generator=torch.Generator().manual_seed(seed + 1))
    return cls(model, parse_hparams(cls.name, hp), ctx)


def cloned(g: torch.Generator) -> torch.Generator:
    out = torch.Generator()
    out.set_state(g.get_state())
    return out


def kl_by_hand(p_logits, q_logits):
    p = torch.softmax(p_logits, 1)
    return (p * (torch.log(p) - torch.log(torch.softmax(q_logits, 1)))).sum(1)


def unit_rows(d):
    return d / d.reshape(d.shape[0], -1).norm(dim=1).reshape(-1, *([1] * (d.dim() - 1)))


# ---------------------------------------------------------------------------------------- VAT
def test_vat_direction_is_the_normalised_hessian_vector_product_of_a_linear_softmax_model():
    """For logits = W x + b, the Hessian of KL(p || p(x + r)) at r = 0 is W^T (diag p - p p^T) W,
    so one power iteration with a tiny xi gives r_adv = eps * normalise(H_i d_i) per sample."""
    torch.manual_seed(3)
    lin = nn.Linear(64, C).double()
    model = nn.Sequential(nn.Flatten(), lin)
    algo = make(VAT, {"eps": 1.7, "xi": 1e-6, "n_power": 1}, model=model)
    x = torch.randn(6, *SHAPE, dtype=torch.float64) * 2
    d0 = torch.randn(6, *SHAPE, dtype=torch.float64)
    with torch.no_grad():
        p_logits = model(x)
    r = algo.adversarial_perturbation(x, p_logits, d0)
    W = lin.weight.detach()
    p = torch.softmax(p_logits, 1)
    for i in range(6):
        H = W.T @ (torch.diag(p[i]) - torch.outer(p[i], p[i])) @ W
        d = d0[i].reshape(-1) / d0[i].norm()
        hd = H @ d
        expected = 1.7 * hd / hd.norm()
        torch.testing.assert_close(r[i].reshape(-1), expected, rtol=0, atol=1e-5)
    # and many iterations converge to the top eigenvector of H (up to sign)
    algo.hp = parse_hparams("vat", {"eps": 1.7, "xi": 1e-6, "n_power": 60})
    r = algo.adversarial_perturbation(x, p_logits, d0)
    for i in range(6):
        H = W.T @ (torch.diag(p[i]) - torch.outer(p[i], p[i])) @ W
        evals, evecs = torch.linalg.eigh(H)
        if evals[-1] < 1.5 * evals[-2]:
            continue  # gap too small for 60 iterations
        cos = float((r[i].reshape(-1) / 1.7) @ evecs[:, -1])
        assert abs(cos) == pytest.approx(1.0, abs=1e-6)


def test_vat_perturbation_has_norm_eps_and_beats_random_directions():
    algo = make(VAT, {"eps": 2.0}, seed=5)
    model = algo.model
    with torch.no_grad():  # a confident network (random CNN logits are tiny)
        model.classifier.weight.mul_(30)
        model.classifier.bias.mul_(30)
    g = torch.Generator().manual_seed(7)
    x = torch.randn(32, *SHAPE, generator=g)
    d0 = torch.randn(32, *SHAPE, generator=g)
    with torch.no_grad():
        p_logits = model(x)
    r = algo.adversarial_perturbation(x, p_logits, d0)
    norms = r.reshape(32, -1).norm(dim=1)
    torch.testing.assert_close(norms, torch.full_like(norms, 2.0), rtol=0, atol=1e-5)
    with torch.no_grad():
        kl_adv = kl_by_hand(p_logits, model(x + r))
        kl_rand = torch.stack([kl_by_hand(p_logits, model(x + 2.0 * unit_rows(torch.randn(x.shape, generator=g))))
                               for _ in range(20)]).mean(0)
    assert bool((kl_adv > kl_rand).all())
    assert float(kl_adv.mean()) > 5 * float(kl_rand.mean())


def _hand_vat(model, x_u, d0, eps, xi, n_power):
    """Independent power iteration on a BN-free model (plain forwards, hand KL)."""
    with torch.no_grad():
        p_logits = model(x_u)
    d = unit_rows(d0)
    for _ in range(n_power):
        r = (xi * d).requires_grad_(True)
        (grad,) = torch.autograd.grad(kl_by_hand(p_logits, model(x_u + r)).sum(), [r])
        d = unit_rows(grad)
    return p_logits, eps * d


@pytest.mark.parametrize("n_power", [1, 2])
def test_vat_loss_terms_by_hand(n_power):
    hp = {"eps": 1.5, "xi": 1e-2, "n_power": n_power, "lambda_u": 0.7}
    algo = make(VAT, hp, seed=2)
    algo.model.double()  # float64 so that the tiny KL of a random network compares tightly
    b = make_batch(2, dtype=torch.float64)
    g = cloned(algo.ctx.generator)
    terms = algo.loss_terms(b, 5)
    d0 = torch.randn(tuple(b.x_u.shape), generator=g, dtype=torch.float64)
    model = algo.model
    p_logits, r_adv = _hand_vat(model, b.x_u, d0, 1.5, 1e-2, n_power)
    with torch.no_grad():
        ref_u = kl_by_hand(p_logits, model(b.x_u + r_adv)).mean()
        ref_l = F.cross_entropy(model(b.x_l), b.y_l)
    assert float(terms.unlabeled.detach()) == pytest.approx(float(ref_u), rel=1e-7)
    assert float(terms.labeled.detach()) == pytest.approx(float(ref_l), rel=1e-7)
    assert terms.weight == pytest.approx(0.7)  # no ramp-up by default
    assert terms.unlabeled.requires_grad
    # the random start really comes from the shared generator: a different start changes the loss
    other = _hand_vat(model, b.x_u, torch.randn(tuple(b.x_u.shape), generator=g, dtype=torch.float64), 1.5, 1e-2, n_power)[1]
    with torch.no_grad():
        assert float(kl_by_hand(p_logits, model(b.x_u + other)).mean()) != pytest.approx(float(ref_u), rel=1e-3)


def test_vat_entropy_min_adds_exactly_the_entropy():
    b = make_batch(4)
    plain = make(VAT, {"eps": 2.0}, seed=4)
    ent = make(VAT, {"eps": 2.0, "entropy_min": True}, seed=4)
    t_plain = plain.loss_terms(b, 0)
    t_ent = ent.loss_terms(b, 0)
    with torch.no_grad():
        p = torch.softmax(ent.model(b.x_u), 1)
        h = -(p * torch.log(p)).sum(1).mean()
    assert float(h) > 0.1
    diff = float(t_ent.unlabeled.detach()) - float(t_plain.unlabeled.detach())
    assert diff == pytest.approx(float(h), rel=1e-5)
    assert float(t_ent.labeled.detach()) == pytest.approx(float(t_plain.labeled.detach()), rel=1e-6)
    # the entropy carries a gradient (it is minimised, not a constant)
    params = list(ent.model.parameters())
    g_ent = torch.autograd.grad(t_ent.unlabeled, params)
    g_plain = torch.autograd.grad(t_plain.unlabeled, list(plain.model.parameters()))
    assert any(not torch.allclose(a, c) for a, c in zip(g_ent, g_plain))


def test_vat_perturbation_passes_leave_batchnorm_statistics_alone():
    algo = make(VAT, {"eps": 2.0, "n_power": 2}, network="cnn_small_bn", seed=6)
    b = make_batch(6)
    ref = copy.deepcopy(algo.model).train()
    with torch.no_grad():
        ref(torch.cat([b.x_l, b.x_u]))  # the one clean forward that may update the statistics
    algo.model.train()
    terms = algo.loss_terms(b, 0)
    assert float(terms.unlabeled.detach()) > 0
    buffers = dict(algo.model.named_buffers())
    assert any("running_mean" in n for n in buffers)
    for n, buf in ref.named_buffers():
        torch.testing.assert_close(buffers[n], buf, rtol=0, atol=0, msg=n)
    # one more forward of the perturbation batch would have changed them: the check can fail
    with torch.no_grad():
        ref(b.x_u + 0.5)
    assert any(not torch.equal(buffers[n], buf) for n, buf in ref.named_buffers() if "running_mean" in n)


def test_vat_rejects_bad_hparams():
    for bad in ({"eps": 0.0}, {"xi": -1.0}, {"n_power": 0}, {"lambda_u": -1.0}, {"rampup_fraction": 2.0}):
        with pytest.raises(ConfigError):
            parse_hparams("vat", bad)


# ---------------------------------------------------------------------------------------- ICT
def _train(algo, steps, lr=0.1):
    stepper = Stepper(algo.model, torch.optim.SGD(algo.model.parameters(), lr=lr), None, algo.ctx.comm)
    for t in range(steps):
        algo.train_step(make_batch(100 + t), t, stepper)


def _hand_draws(g, alpha, n):
    """mixup's draws: one integer seeding numpy's Beta, then a permutation."""
    seed = int(torch.randint(0, 2**62, (1,), generator=g))
    lam = float(np.random.default_rng(seed).beta(alpha, alpha))
    return lam, torch.randperm(n, generator=g)


def test_ict_mixed_inputs_and_targets_by_hand():
    algo = make(ICT, {"alpha": 0.75, "ema_decay": 0.9, "rampup": "none"}, seed=8)
    _train(algo, 4)  # the teacher now lags the student
    b = make_batch(8)
    g = cloned(algo.ctx.generator)
    x_l, u, t, u_mix, z, lam, perm = algo.mixed_batch(b)
    lam_ref, perm_ref = _hand_draws(g, 0.75, b.x_u.shape[0])
    assert lam == pytest.approx(lam_ref, abs=0) and 0 < lam < 1
    assert torch.equal(perm, perm_ref) and not torch.equal(perm, torch.arange(len(perm)))
    teacher = copy.deepcopy(algo.teacher.model)
    with torch.no_grad():
        t_ref = torch.softmax(teacher(b.x_u), 1)
        student = torch.softmax(algo.model(b.x_u), 1)
    assert not torch.allclose(t_ref, student, atol=1e-4)  # targets from the student would fail below
    torch.testing.assert_close(t, t_ref)
    torch.testing.assert_close(u_mix, lam_ref * b.x_u + (1 - lam_ref) * b.x_u[perm_ref])
    torch.testing.assert_close(z, lam_ref * t_ref + (1 - lam_ref) * t_ref[perm_ref])
    torch.testing.assert_close(x_l, b.x_l)


def test_ict_loss_terms_by_hand():
    hp = {"alpha": 1.0, "ema_decay": 0.9, "lambda_u": 30.0, "rampup": "sigmoid", "rampup_fraction": 0.5}
    algo = make(ICT, hp, seed=9, total_steps=100)
    _train(algo, 3)
    b = make_batch(9)
    g = cloned(algo.ctx.generator)
    terms = algo.loss_terms(b, 20)
    lam, perm = _hand_draws(g, 1.0, b.x_u.shape[0])
    with torch.no_grad():
        t = torch.softmax(copy.deepcopy(algo.teacher.model)(b.x_u), 1)
        u_mix = lam * b.x_u + (1 - lam) * b.x_u[perm]
        z = lam * t + (1 - lam) * t[perm]
        q = torch.softmax(algo.model(u_mix), 1)
        ref_u = ((q - z) ** 2).sum(1).mean()
        ref_l = F.cross_entropy(algo.model(b.x_l), b.y_l)
    assert float(terms.unlabeled.detach()) == pytest.approx(float(ref_u), rel=1e-5)
    assert float(terms.labeled.detach()) == pytest.approx(float(ref_l), rel=1e-5)
    assert terms.weight == pytest.approx(30.0 * math.exp(-5 * (1 - 20 / 50) ** 2))
    assert terms.diagnostics["mixup_lambda"] == pytest.approx(lam)


def test_ict_teacher_is_the_hand_computed_ema():
    decay = 0.6  # min(decay, (t+1)/(t+10)) switches branch at t = 13
    algo = make(ICT, {"ema_decay": decay, "rampup": "none"}, seed=10)
    stepper = Stepper(algo.model, torch.optim.SGD(algo.model.parameters(), lr=0.05), None, algo.ctx.comm)
    ema = {n: p.detach().clone() for n, p in algo.model.named_parameters()}
    for t in range(16):
        algo.train_step(make_batch(t), t, stepper)
        d = min(decay, (t + 1) / (t + 10))
        for n, p in algo.model.named_parameters():
            ema[n] = d * ema[n] + (1 - d) * p.detach()
    teacher = dict(algo.teacher.model.named_parameters())
    for n in ema:
        torch.testing.assert_close(teacher[n], ema[n], rtol=1e-5, atol=1e-7, msg=n)
    assert any(not torch.allclose(teacher[n], p) for n, p in algo.model.named_parameters())
    # the checkpoint state round-trips
    other = make(ICT, {"ema_decay": decay}, seed=11)
    other.load_state_dict(algo.state_dict())
    for n, p in other.teacher.model.named_parameters():
        assert torch.equal(p, teacher[n])
    assert other.teacher.updates == 16


def test_ict_rejects_bad_hparams():
    for bad in ({"alpha": 0.0}, {"ema_decay": 1.0}, {"lambda_u": -1.0}, {"rampup_fraction": -0.1}):
        with pytest.raises(ConfigError):
            parse_hparams("ict", bad)
