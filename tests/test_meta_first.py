"""The rule template's meta step before the student's forward (``loss_rule_inputs``).

Where a loss rule's meta step reads nothing of the student's training forward and the base
imputes without it (Mean Teacher), the template takes the meta step first, so the meta passes
never run beside that forward's graph. The reference is the usual order (``prepare``, then the
meta step), forced on the same run: parameters, BatchNorm statistics, the teacher and every
reported number must agree to the bit.
"""
import pytest
import torch
from torch import nn

from algorithms import Batch, Comm, Stepper, TrainContext, get_algorithm
from algorithms.networks import build_network

C = 4


def _noise_augment(x, g):
    # a random view per call, from the augmentation generator: the views' draw order is checked too
    return x + 0.1 * torch.randn(x.shape, generator=g)


def _run(algorithm, hparams, order, model_fn=None, steps=3):
    """Train ``steps`` steps; ``order``: None (the template decides), "usual" or "meta_first" (forced).
    -> (model state, teacher state or None, reports, orders seen by the meta step)."""
    torch.manual_seed(0)
    model = (model_fn or (lambda: build_network("cnn_small_bn", (1, 8, 8), C)))()
    cls = get_algorithm(algorithm)
    algo = cls(model, cls.Hparams(**hparams),
               TrainContext(num_classes=C, total_steps=100, generator=torch.Generator().manual_seed(5),
                            augment=_noise_augment))
    seen = []
    inner = algo.rule.meta_step

    def meta_step(s, batch, info):
        seen.append("meta_first" if s.logits_u is None else "usual")
        return inner(s, batch, info)

    algo.rule.meta_step = meta_step
    g = torch.Generator().manual_seed(4)
    stepper = Stepper(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), None, Comm())
    reports = []
    for step in range(steps):
        if order is not None:
            algo._meta_first = order == "meta_first"
        batch = Batch(torch.randn(6, 1, 8, 8, generator=g), torch.randint(0, C, (6,), generator=g),
                      torch.randn(10, 1, 8, 8, generator=g))
        reports.append(algo.train_step(batch, step + 20, stepper))
    teacher = getattr(algo, "teacher", None)
    return model.state_dict(), None if teacher is None else teacher.model.state_dict(), reports, seen, algo


def _equal_runs(a, b):
    (ma, ta, ra, _, _), (mb, tb, rb, _, _) = a, b
    assert ma.keys() == mb.keys() and all(torch.equal(ma[k], mb[k]) for k in ma)
    assert (ta is None) == (tb is None)
    if ta is not None:
        assert all(torch.equal(ta[k], tb[k]) for k in ta)
    for x, y in zip(ra, rb):
        assert x.keys() == y.keys()
        for k in x:
            assert torch.equal(torch.as_tensor(x[k]), torch.as_tensor(y[k])), k


MT_RULES = [("mean_teacher+meta_semi", {}), ("mean_teacher+l2rw", {}),
            ("mean_teacher+meta_semi", {"meta_method": "fd"}),
            ("mean_teacher+meta_grad", {"meta_bn": "train"}), ("mean_teacher+meta_grad", {"meta_bn": "train", "meta_method": "jvp"})]


@pytest.mark.parametrize("algorithm,hparams", MT_RULES)
def test_meta_step_first_is_the_usual_order_to_the_bit(algorithm, hparams):
    """Mean Teacher + each first-order loss rule on a BatchNorm network: the template takes the
    meta step first from the second step on, and the run equals the usual order's bit for bit."""
    auto = _run(algorithm, hparams, None)
    assert auto[3] == ["usual", "meta_first", "meta_first"] and auto[4].meta_step_first() is True
    _equal_runs(auto, _run(algorithm, hparams, "usual"))


def test_a_forward_that_draws_from_the_rng_keeps_the_usual_order():
    """Dropout draws from the global RNG in every forward: the first step sees it and the run
    stays in the usual order. Forcing the other order changes the numbers (the draws come in
    another order), which is why the check exists."""
    def dropout_net():
        return nn.Sequential(build_network("cnn_small_bn", (1, 8, 8), C), nn.Dropout(0.3))

    auto = _run("mean_teacher+meta_semi", {}, None, dropout_net)
    assert auto[3] == ["usual"] * 3 and auto[4].meta_step_first() is False
    _equal_runs(auto, _run("mean_teacher+meta_semi", {}, "usual", dropout_net))
    forced = _run("mean_teacher+meta_semi", {}, "meta_first", dropout_net)
    assert not all(torch.equal(auto[0][k], forced[0][k]) for k in auto[0])


@pytest.mark.parametrize("algorithm,hparams,why", [
    ("pseudo_label+meta_semi", {"threshold": 0.0}, "its targets are the student's own predictions"),
    ("pi_model+meta_semi", {}, "its imputer is a second student forward (BatchNorm statistics in order)"),
    ("mean_teacher+meta_semi", {"meta_bn": "eval"}, "eval-mode meta passes read the statistics the forward updates"),
    ("mean_teacher+meta_grad", {}, "Meta-Gradient SSL's default meta_bn is eval"),
    ("mean_teacher+meta_grad", {"meta_bn": "train", "meta_grad_init": "model"}, "y_tilde is the student's softmax"),
    ("mean_teacher+l2i_l", {}, "a two-update rule meta-steps after the base's update"),
])
def test_the_usual_order_where_the_meta_step_needs_the_student(algorithm, hparams, why):
    """Bases that impute from the student, meta steps that read its logits or its statistics,
    and two-update rules keep the usual order from the first step."""
    auto = _run(algorithm, hparams, None, steps=0 if "l2i" in algorithm else 2)  # l2i: no hold-out batch here
    assert auto[4].meta_step_first() is False, why
    assert auto[3] == ([] if "l2i" in algorithm else ["usual", "usual"]), why


def test_meta_step_first_on_a_network_without_batchnorm_in_eval_mode():
    """With no BatchNorm layer, an eval-mode meta pass reads no statistics: Meta-Gradient SSL's
    default settings take the meta step first on ``cnn_small``, to the bit of the usual order."""
    net = lambda: build_network("cnn_small", (1, 8, 8), C)  # noqa: E731
    auto = _run("mean_teacher+meta_grad", {}, None, net)
    assert auto[3] == ["usual", "meta_first", "meta_first"]
    _equal_runs(auto, _run("mean_teacher+meta_grad", {}, "usual", net))
