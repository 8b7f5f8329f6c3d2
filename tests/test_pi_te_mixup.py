"""Pi-model, temporal ensembling and supervised MixUp against hand computations."""
import copy
import io
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from algorithms import Batch, Comm, TrainContext, get_algorithm, parse_hparams
from algorithms.networks import build_network

C = 10
SHAPE = (1, 8, 8)


def noise_augment(x, g):
    return x + 0.3 * torch.randn(x.shape, generator=g, dtype=x.dtype)


def make_batch(seed=0, b_l=8, b_u=12):
    g = torch.Generator().manual_seed(seed + 1000)
    return Batch(torch.randn(b_l, *SHAPE, generator=g), torch.randint(0, C, (b_l,), generator=g),
                 torch.randn(b_u, *SHAPE, generator=g))


def make(name, hp=None, total_steps=100, comm=None, **ctx_kw):
    torch.manual_seed(0)
    model = build_network("cnn_small", SHAPE, C)
    ctx = TrainContext(C, total_steps, comm=comm or Comm(), augment=noise_augment,
                       generator=torch.Generator().manual_seed(1), **ctx_kw)
    return get_algorithm(name)(model, parse_hparams(name, hp or {}), ctx)


def cloned(g):
    h = torch.Generator()
    h.set_state(g.get_state())
    return h


# -- Pi-model ------------------------------------------------------------------------------

def test_pi_model_defaults():
    hp = parse_hparams("pi_model", {})
    assert (hp.lambda_u, hp.rampup, hp.rampup_fraction) == (10.0, "sigmoid", 0.4)
    assert get_algorithm("pi_model").needs_teacher_view


def test_pi_model_target_is_softmax_of_a_second_view_and_loss_by_hand():
    algo = make("pi_model", {"lambda_u": 7.0, "rampup_fraction": 0.4})
    b = make_batch()
    g = cloned(algo.ctx.generator)
    model = copy.deepcopy(algo.model)
    s = algo.prepare(b, 10)
    # draws in order: labeled view, student view, second (target) view
    x_l = noise_augment(b.x_l, g)
    x_u = noise_augment(b.x_u, g)
    x_u2 = noise_augment(b.x_u, g)
    torch.testing.assert_close(s.x_u_student, x_u)
    with torch.no_grad():
        target = torch.softmax(model(x_u2), 1)
        own = torch.softmax(model(x_u), 1)
    torch.testing.assert_close(s.targets, target)
    assert not torch.allclose(s.targets, own, atol=1e-4)  # not the student's own view
    assert torch.equal(s.mask, torch.ones(b.x_u.shape[0]))
    # loss = CE + lambda_u * exp(-5 (1 - 10/40)^2) * mean_i sum_c (p_ic - target_ic)^2
    algo = make("pi_model", {"lambda_u": 7.0, "rampup_fraction": 0.4})
    terms = algo.loss_terms(b, 10)
    logits = model(torch.cat([x_l, x_u]))
    p = torch.softmax(logits[8:], 1)
    ref_u = ((p - target) ** 2).sum(1).mean()
    ref_l = F.cross_entropy(logits[:8], b.y_l)
    torch.testing.assert_close(terms.unlabeled, ref_u)
    torch.testing.assert_close(terms.labeled, ref_l)
    assert terms.weight == pytest.approx(7.0 * math.exp(-5 * 0.75 ** 2))
    # the target carries no gradient: d(term)/d(theta) equals the hand gradient with a constant target
    g_algo = torch.autograd.grad(terms.unlabeled, list(algo.model.parameters()))
    g_ref = torch.autograd.grad(ref_u, list(model.parameters()), retain_graph=True)
    for a, r in zip(g_algo, g_ref):
        torch.testing.assert_close(a, r)
    with_grad_target = ((p - torch.softmax(model(x_u2), 1)) ** 2).sum(1).mean()
    g_both = torch.autograd.grad(with_grad_target, list(model.parameters()))
    assert any(not torch.allclose(a, r) for a, r in zip(g_algo, g_both))


# -- temporal ensembling -------------------------------------------------------------------

K = 4  # classes of the toy model below


def identity_algo(alpha, pool, comm=None):
    """A model whose logits are its inputs, so the step's predictions are known exactly."""
    model = torch.nn.Linear(K, K).double()
    with torch.no_grad():
        model.weight.copy_(torch.eye(K, dtype=torch.float64))
        model.bias.zero_()
    ctx = TrainContext(K, 100, comm=comm or Comm(), augment=lambda x, g: x, num_unlabeled=pool)
    hp = parse_hparams("temporal_ensembling", {"alpha": alpha, "rampup": "none", "lambda_u": 2.0})
    return get_algorithm("temporal_ensembling")(model, hp, ctx)


def te_steps(seed=0):
    """(u_idx, logits) per step, one with a repeated index."""
    rng = np.random.default_rng(seed)
    idx = [[0, 1, 2], [1, 3, 0], [2, 1, 4], [0, 0, 3], [4, 2, 1], [3, 1, 2]]
    return [(np.array(i), rng.normal(size=(3, K)) * 2) for i in idx]


def te_batch(idx, logits):
    x_l = torch.zeros(2, K, dtype=torch.float64)
    return Batch(x_l, torch.tensor([0, 1]), torch.from_numpy(logits), torch.from_numpy(idx))


def test_temporal_ensembling_matches_numpy_recursion():
    alpha, pool = 0.6, 5
    algo = identity_algo(alpha, pool)
    Z = np.zeros((pool, K))
    t = np.zeros(pool, dtype=int)
    seen_masks = []
    for step, (idx, logits) in enumerate(te_steps()):
        p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        # targets of this step: past visits only, bias-corrected per sample
        mask = (t[idx] > 0).astype(float)
        tgt = np.zeros((len(idx), K))
        for r, i in enumerate(idx):
            if t[i] > 0:
                tgt[r] = Z[i] / (1 - alpha ** t[i])
        s = algo.prepare(te_batch(idx, logits), step)
        np.testing.assert_allclose(s.mask.numpy(), mask)
        np.testing.assert_allclose(s.targets.numpy()[mask > 0], tgt[mask > 0], rtol=1e-12)
        terms = algo.loss_terms(te_batch(idx, logits), step)
        ref_u = (mask * ((p - tgt) ** 2).sum(1)).mean()
        assert float(terms.unlabeled.detach()) == pytest.approx(ref_u, rel=1e-10, abs=1e-14)
        assert terms.weight == 2.0
        algo.after_step(step)
        for r, i in enumerate(idx):  # one update per occurrence, in order
            Z[i] = alpha * Z[i] + (1 - alpha) * p[r]
            t[i] += 1
        seen_masks.append(mask)
        state = algo.state_dict()
        np.testing.assert_allclose(state["Z"].numpy(), Z, rtol=1e-12, atol=1e-15)
        np.testing.assert_array_equal(state["count"].numpy(), t)
    # first visits are masked, later ones are not: step 0 all new; step 1 has 1, 0 seen and 3 new;
    # step 3 repeats sample 0 (seen) in both slots
    np.testing.assert_array_equal(seen_masks[0], [0, 0, 0])
    np.testing.assert_array_equal(seen_masks[1], [1, 0, 1])
    np.testing.assert_array_equal(seen_masks[2], [1, 1, 0])
    np.testing.assert_array_equal(seen_masks[3], [1, 1, 1])
    assert t.tolist() == [4, 5, 4, 3, 2]
    # with a single visit the bias-corrected target is that visit's softmax
    assert (1 - alpha) * 1 / (1 - alpha ** 1) == pytest.approx(1.0)


def test_temporal_ensembling_state_dict_round_trip():
    algo = identity_algo(0.6, 5)
    steps = te_steps(1)
    for step, (idx, logits) in enumerate(steps[:4]):
        algo.loss_terms(te_batch(idx, logits), step)
        algo.after_step(step)
    buf = io.BytesIO()
    torch.save(algo.state_dict(), buf)
    buf.seek(0)
    other = identity_algo(0.6, 5)
    other.load_state_dict(torch.load(buf))
    assert torch.equal(other.Z, algo.Z) and torch.equal(other.count, algo.count)
    for step, (idx, logits) in enumerate(steps[4:], start=4):
        a, b = algo.prepare(te_batch(idx, logits), step), other.prepare(te_batch(idx, logits), step)
        assert torch.equal(a.targets, b.targets) and torch.equal(a.mask, b.mask)
        algo.after_step(step)
        other.after_step(step)
    assert torch.equal(other.Z, algo.Z)
    # a fresh algorithm without the state has no targets for the same samples
    fresh = identity_algo(0.6, 5)
    idx, logits = steps[5]
    assert float(fresh.prepare(te_batch(idx, logits), 5).mask.sum()) == 0.0


def test_temporal_ensembling_prepare_without_step_does_not_advance():
    algo = identity_algo(0.6, 5)
    idx, logits = te_steps()[0]
    for _ in range(3):
        algo.prepare(te_batch(idx, logits), 0)
    assert int(algo.count.sum()) == 0
    algo.after_step(0)
    algo.after_step(1)  # nothing pending: no second update
    assert algo.count.tolist() == [1, 1, 1, 0, 0]


# -- supervised MixUp ----------------------------------------------------------------------

def test_supervised_mixup_inputs_targets_and_loss_by_hand():
    algo = make("supervised_mixup", {"alpha": 1.0})
    assert get_algorithm("supervised_mixup").uses_unlabeled is False
    b = make_batch(2)
    g = cloned(algo.ctx.generator)
    model = copy.deepcopy(algo.model)
    terms = algo.loss_terms(b, 0)
    # reproduce: weak view, then lam ~ Beta(1, 1) seeded from the generator, then the permutation
    x = noise_augment(b.x_l, g)
    seed = int(torch.randint(0, 2**62, (1,), generator=g))
    lam = float(np.random.default_rng(seed).beta(1.0, 1.0))
    perm = torch.randperm(x.shape[0], generator=g)
    assert 0.02 < lam < 0.98 and not torch.equal(perm, torch.arange(x.shape[0]))
    y = torch.eye(C)[b.y_l]
    x_mix, y_mix = lam * x + (1 - lam) * x[perm], lam * y + (1 - lam) * y[perm]
    x_a, y_a, lam_a, perm_a = make("supervised_mixup", {"alpha": 1.0}).mixed_batch(b)
    torch.testing.assert_close(x_a, x_mix)
    torch.testing.assert_close(y_a, y_mix)
    assert lam_a == pytest.approx(lam) and torch.equal(perm_a, perm)
    with torch.no_grad():
        ref = -(y_mix * torch.log_softmax(model(x_mix), 1)).sum(1).mean()
    assert float(terms.labeled.detach()) == pytest.approx(float(ref), rel=1e-6)
    assert terms.diagnostics["mixup_lambda"] == pytest.approx(lam)
    # labels really are mixed: the soft loss differs from the hard CE on the mixed inputs
    with torch.no_grad():
        assert abs(float(F.cross_entropy(model(x_mix), b.y_l)) - float(ref)) > 1e-3


def test_supervised_mixup_ignores_unlabeled_data():
    b = make_batch(3)
    out = []
    for x_u in (b.x_u, torch.full((5, *SHAPE), float("nan")), b.x_u[:0]):
        terms = make("supervised_mixup").loss_terms(Batch(b.x_l, b.y_l, x_u), 0)
        assert float(terms.unlabeled) == 0.0 and terms.weight == 0.0
        out.append(float(terms.labeled.detach()))
    assert out[0] == out[1] == out[2]


class HalfComm(Comm):
    """Rank ``rank`` of 2 workers without a process group (shard only)."""

    def __init__(self, rank):
        self.rank, self.world_size = rank, 2


def test_supervised_mixup_mixes_the_global_batch_before_sharding():
    b = make_batch(4)
    full = float(make("supervised_mixup").loss_terms(b, 0).labeled.detach())
    halves = [float(make("supervised_mixup", comm=HalfComm(r)).loss_terms(b, 0).labeled.detach()) for r in (0, 1)]
    assert np.mean(halves) == pytest.approx(full, rel=1e-6)
    assert halves[0] != pytest.approx(halves[1])
