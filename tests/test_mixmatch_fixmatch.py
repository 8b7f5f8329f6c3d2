"""MixMatch and FixMatch: their characteristic pieces against hand computations.

Every reference below is rebuilt from the raw batch with a clone of the shared generator
(same draws: augmentations, then Beta seed, then permutation) and plain tensor formulas,
on a float64 linear model so tolerances can be tight.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from algorithms import Batch, ConfigError, TrainContext, parse_hparams
from algorithms.fixmatch import FixMatch
from algorithms.mixmatch import MixMatch, sharpen

C = 5
SHAPE = (1, 4, 4)
DT = torch.float64


def noise_augment(x, g):
    return x + 0.5 * torch.randn(x.shape, generator=g, dtype=x.dtype)


def make_model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, C)).to(DT)


def make_batch(seed=0, b_l=6, b_u=8):
    g = torch.Generator().manual_seed(seed + 100)
    return Batch(2 * torch.randn(b_l, *SHAPE, generator=g, dtype=DT), torch.randint(0, C, (b_l,), generator=g),
                 2 * torch.randn(b_u, *SHAPE, generator=g, dtype=DT))


def clone(g):
    h = torch.Generator()
    h.set_state(g.get_state())
    return h


def make_mixmatch(total_steps=100, **hp):
    ctx = TrainContext(C, total_steps, augment=noise_augment, generator=torch.Generator().manual_seed(1))
    return MixMatch(make_model(), parse_hparams("mixmatch", hp), ctx)


def mixmatch_reference(model, batch, g, K, T, alpha):
    """MixMatch's global batch written out from the paper (Alg. 1), drawing from ``g``."""
    x_l = noise_augment(batch.x_l, g)
    views = [noise_augment(batch.x_u, g) for _ in range(K)]
    with torch.no_grad():
        p = sum(torch.softmax(model(v), 1) for v in views) / K
    q = p ** (1 / T)
    q = q / q.sum(1, keepdim=True)
    a = torch.cat([x_l, *views])
    t = torch.cat([F.one_hot(batch.y_l, C).to(DT), *[q] * K])
    seed = int(torch.randint(0, 2**62, (1,), generator=g))
    lam = float(np.random.default_rng(seed).beta(alpha, alpha))
    lam_p = max(lam, 1 - lam)
    perm = torch.randperm(a.shape[0], generator=g)
    return dict(x_l=x_l, views=views, p=p, q=q, lam=lam, lam_p=lam_p, perm=perm,
                x=lam_p * a + (1 - lam_p) * a[perm], y=lam_p * t + (1 - lam_p) * t[perm])


# ------------------------------------------------------------------------------------ MixMatch

def test_sharpen_is_p_to_the_one_over_T_normalised():
    g = torch.Generator().manual_seed(0)
    p = torch.softmax(3 * torch.randn(7, C, generator=g, dtype=DT), 1)
    for T in (0.5, 0.25, 1.0, 2.0):
        ref = p ** (1 / T) / (p ** (1 / T)).sum(1, keepdim=True)
        torch.testing.assert_close(sharpen(p, T), ref, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(sharpen(p, 1.0), p, rtol=1e-10, atol=1e-14)
    # a hand example: (0.6, 0.3, 0.1) at T = 0.5 -> (0.36, 0.09, 0.01) / 0.46
    hand = torch.tensor([[0.6, 0.3, 0.1]], dtype=DT)
    torch.testing.assert_close(sharpen(hand, 0.5), torch.tensor([[0.36, 0.09, 0.01]], dtype=DT) / 0.46)


def test_mixmatch_label_guess_is_the_sharpened_mean_over_K_views():
    K, T = 3, 0.5
    algo = make_mixmatch(K=K, T=T)
    b = make_batch()
    ref = mixmatch_reference(algo.model, b, clone(algo.ctx.generator), K, T, algo.hp.alpha)
    m = algo.mixed_batches(b)
    assert len(m["u_views"]) == K
    for v, rv in zip(m["u_views"], ref["views"]):
        torch.testing.assert_close(v, rv)
    torch.testing.assert_close(m["guess"], ref["q"], rtol=1e-10, atol=1e-12)
    # not vacuous: the K views differ, and the mean over all K is not the guess of any one view
    with torch.no_grad():
        for v in ref["views"]:
            one = torch.softmax(algo.model(v), 1) ** (1 / T)
            assert not torch.allclose(one / one.sum(1, keepdim=True), m["guess"], atol=1e-4)


def test_mixmatch_mixup_is_lam_prime_a_plus_one_minus_lam_prime_a_perm():
    algo = make_mixmatch(K=2, alpha=0.75)
    lams = []
    for seed in range(12):
        b = make_batch(seed)
        ref = mixmatch_reference(algo.model, b, clone(algo.ctx.generator), 2, algo.hp.T, 0.75)
        m = algo.mixed_batches(b)
        n_l = b.x_l.shape[0]
        assert m["lam_p"] == pytest.approx(ref["lam_p"], rel=1e-12) and m["lam_p"] >= 0.5
        assert torch.equal(m["perm"], ref["perm"])
        torch.testing.assert_close(m["x_mix"], ref["x"][:n_l])
        torch.testing.assert_close(m["u_mix"], ref["x"][n_l:])
        torch.testing.assert_close(m["y_mix"], ref["y"][:n_l])
        torch.testing.assert_close(m["u_targets"], ref["y"][n_l:])
        torch.testing.assert_close(m["u_targets"].sum(1), torch.ones(m["u_targets"].shape[0], dtype=DT))
        assert m["x_mix"].shape[0] == n_l and m["u_mix"].shape[0] == 2 * b.x_u.shape[0]
        lams.append(ref["lam"])
    # the max(lam, 1 - lam) branch was exercised, and the permutation mixes labeled with unlabeled
    assert min(lams) < 0.5 < max(lams)
    assert not torch.equal(ref["perm"], torch.arange(ref["perm"].numel()))


def test_mixmatch_loss_terms_by_hand():
    total, step = 200, 30
    algo = make_mixmatch(total_steps=total, K=2, T=0.5, alpha=0.75, lambda_u=75.0, rampup_fraction=0.4, rampup="linear")
    b = make_batch(7)
    ref = mixmatch_reference(algo.model, b, clone(algo.ctx.generator), 2, 0.5, 0.75)
    terms = algo.loss_terms(b, step)
    n_l = b.x_l.shape[0]
    with torch.no_grad():
        logits = algo.model(ref["x"])
        p_l = torch.softmax(logits[:n_l], 1)
        loss_l = -(ref["y"][:n_l] * torch.log(p_l)).sum(1).mean()
        p_u = torch.softmax(logits[n_l:], 1)
        # Eq. 5: 1 / (C |U'|) sum ||q - p||^2
        loss_u = ((p_u - ref["y"][n_l:]) ** 2).sum() / (C * p_u.shape[0])
    assert float(terms.labeled.detach()) == pytest.approx(float(loss_l), rel=1e-10)
    assert float(terms.unlabeled.detach()) == pytest.approx(float(loss_u), rel=1e-10)
    assert terms.weight == pytest.approx(75.0 * step / (0.4 * total))
    assert make_mixmatch(total_steps=total).loss_terms(b, 100).weight == pytest.approx(75.0)  # ramp done
    assert terms.unlabeled.requires_grad and terms.labeled.requires_grad


def test_mixmatch_defaults_and_validation():
    hp = parse_hparams("mixmatch", {})
    assert (hp.K, hp.T, hp.alpha, hp.lambda_u, hp.rampup) == (2, 0.5, 0.75, 75.0, "linear")
    for bad in ({"K": 0}, {"T": 0.0}, {"alpha": -1.0}, {"lambda_u": -1.0}, {"rampup_fraction": 1.5}):
        with pytest.raises(ConfigError):
            parse_hparams("mixmatch", bad)


# ------------------------------------------------------------------------------------ FixMatch

class RecordingStrong:
    """A strong augmentation that is far from the weak one and records what it saw and made."""

    def __init__(self):
        self.inputs, self.outputs = [], []

    def __call__(self, x, g):
        out = -x.flip(-1) + 1.5 * torch.randn(x.shape, generator=g, dtype=x.dtype)
        self.inputs.append(x.clone())
        self.outputs.append(out.clone())
        return out


def make_fixmatch(threshold=0.95, **hp):
    strong = RecordingStrong()
    ctx = TrainContext(C, 100, augment=noise_augment, generator=torch.Generator().manual_seed(3), strong_augment=strong)
    return FixMatch(make_model(1), parse_hparams("fixmatch", dict(threshold=threshold, **hp)), ctx), strong


def fixmatch_reference(algo, b, tau):
    """Weak labeled view, weak unlabeled view (pseudo-labels), strong unlabeled view (loss)."""
    g = clone(algo.ctx.generator)
    x_l = noise_augment(b.x_l, g)
    x_w = noise_augment(b.x_u, g)
    with torch.no_grad():
        q = torch.softmax(algo.model(x_w), 1)
    conf, target = q.max(1)
    mask = (conf >= tau).to(DT)
    return x_l, x_w, q, conf, target, mask


def test_fixmatch_mask_targets_and_loss_on_the_strong_view_by_hand():
    b = make_batch(5, b_u=16)
    algo, strong = make_fixmatch()
    # a threshold that splits this batch: between the 6th and 7th smallest weak-view confidence
    _, _, _, conf, _, _ = fixmatch_reference(algo, b, 0.0)
    tau = float(conf.sort().values[6:8].mean())
    algo.hp = parse_hparams("fixmatch", {"threshold": tau})
    x_l, x_w, q, conf, target, mask = fixmatch_reference(algo, b, tau)
    assert 0 < mask.sum() < mask.numel()

    s = algo.prepare(b, 0)
    torch.testing.assert_close(s.mask, mask)
    torch.testing.assert_close(s.targets, F.one_hot(target, C).to(DT))
    # the student's view is the strong augmentation of the raw unlabeled batch
    assert len(strong.inputs) == 1
    torch.testing.assert_close(strong.inputs[0], b.x_u)
    torch.testing.assert_close(s.x_u_student, strong.outputs[0])

    algo2, strong2 = make_fixmatch(threshold=tau)
    terms = algo2.loss_terms(b, 0)
    x_s = strong2.outputs[0]
    with torch.no_grad():
        logp_s = torch.log_softmax(algo2.model(x_s), 1)
        ce = -logp_s[torch.arange(x_s.shape[0]), target]
        ref_u = (mask * ce).sum() / x_s.shape[0]  # 1/(mu B): masked samples count in the denominator
        ref_l = -torch.log_softmax(algo2.model(x_l), 1)[torch.arange(x_l.shape[0]), b.y_l].mean()
        # the same formula on the weak view gives another value: the loss really uses the strong view
        logp_w = torch.log_softmax(algo2.model(x_w), 1)
        weak_u = (mask * -logp_w[torch.arange(x_w.shape[0]), target]).sum() / x_w.shape[0]
    assert float(terms.unlabeled.detach()) == pytest.approx(float(ref_u), rel=1e-10)
    assert float(terms.labeled.detach()) == pytest.approx(float(ref_l), rel=1e-10)
    assert abs(float(weak_u) - float(ref_u)) > 1e-3
    assert terms.weight == 1.0  # lambda_u = 1, no ramp-up by default
    assert terms.diagnostics["mask_fraction"] == pytest.approx(float(mask.mean()))
    assert terms.unlabeled.requires_grad


def test_fixmatch_impute_by_hand():
    probs = torch.tensor([[0.97, 0.01, 0.01, 0.005, 0.005],
                          [0.30, 0.40, 0.10, 0.10, 0.10],
                          [0.01, 0.01, 0.01, 0.01, 0.96],
                          [0.90, 0.05, 0.05, 0.0, 0.0]], dtype=DT).clamp_min(1e-12)
    logits = torch.log(probs) - 2.0
    algo, _ = make_fixmatch(threshold=0.95)
    targets, mask = algo.impute(None, logits)
    torch.testing.assert_close(targets.argmax(1), torch.tensor([0, 1, 4, 0]))
    torch.testing.assert_close(mask, torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=DT))
    algo.hp = parse_hparams("fixmatch", {"threshold": 0.0})
    torch.testing.assert_close(algo.impute(None, logits)[1], torch.ones(4, dtype=DT))


def test_fixmatch_defaults_and_validation():
    hp = parse_hparams("fixmatch", {})
    assert (hp.threshold, hp.lambda_u, hp.rampup_fraction, hp.rampup) == (0.95, 1.0, 0.0, "none")
    for bad in ({"threshold": 1.0}, {"threshold": -0.1}, {"lambda_u": -1.0}):
        with pytest.raises(ConfigError):
            parse_hparams("fixmatch", bad)
