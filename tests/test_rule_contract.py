"""The contract of the rule template, for every registered meta rule on every base it accepts:

* the base's ``after_step`` (teacher EMA, temporal ensemble) runs once per iteration;
* meta passes (``meta_step``, and a two-update rule's after-update diagnostics) leave the
  BatchNorm statistics, the parameters' ``.grad`` and the model's train mode alone;
* 2 gloo workers with half batches equal 1 worker on the whole batch (BN-free, float64).

Each pair runs on a classification task, and those whose base and rule accept regression on a
regression task too (float targets, standardised, with a toy equivariant augmentation whose
target displacement is known). New rules join these tests by being registered: nothing here
names one.
"""
from __future__ import annotations

import dataclasses

import pytest
import torch

from algorithms import Batch, Comm, Stepper, TrainContext, get_algorithm, list_compositions
from algorithms.meta.rule import TwoUpdateRule
from algorithms.networks import build_network
from algorithms.task import ClassificationTask, RegressionTask
from tests.gloo import run_workers

PAIRS = list_compositions()
CASES = [(p, "classification") for p in PAIRS] + [(p, "regression") for p in PAIRS
                                                  if "regression" in get_algorithm(p).tasks]
C, B_L, B_U, B_H, D = 4, 8, 16, 6, 6


def _toy_regression_task() -> RegressionTask:
    """Targets [n, C] standardised by a fixed mean / std; the augmentation adds input noise and displaces the
    targets by a random known amount (both from the run's generator, as the landmark shift)."""
    def augment(x: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        noise = 0.1 * torch.randn(x.shape, generator=g, dtype=x.dtype)
        return x + noise, torch.randn(x.shape[0], C, generator=g, dtype=x.dtype)

    mean, std = torch.linspace(-1.0, 1.0, C, dtype=torch.float64), torch.linspace(0.5, 2.0, C, dtype=torch.float64)
    return RegressionTask(mean, std, augment, lambda pred, y: (pred - y).abs().mean(dim=1))


def _make(name: str, net: str, shape: tuple, comm=None, task: str = "classification"):
    """The composed algorithm (float64; identity augmentations for classification), its stepper and global
    batches."""
    cls = get_algorithm(name)
    fields = {f.name for f in dataclasses.fields(cls.Hparams)}
    values = {"rampup": "none", "threshold": 0.0, "ema_decay": 0.9, "l2i_inner_lr_scale": 1.0, "holdout_batch": B_H,
              "diag_every": 1}
    hp = cls.Hparams(**{k: v for k, v in values.items() if k in fields})
    torch.manual_seed(0)
    model = build_network(net, shape, C).double()
    ctx = TrainContext(C, 100, comm=comm or Comm(), generator=torch.Generator().manual_seed(1), num_unlabeled=64,
                       task=ClassificationTask() if task == "classification" else _toy_regression_task())
    algo = cls(model, hp, ctx)
    stepper = Stepper(model, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9), None, ctx.comm)
    g = torch.Generator().manual_seed(2)
    holdout = cls.holdout_spec(hp).size > 0

    def batch(step: int) -> Batch:
        x = lambda n: torch.randn(n, *shape, generator=g, dtype=torch.float64)  # noqa: E731
        y = (lambda n: torch.randint(0, C, (n,), generator=g)) if task == "classification" else (  # noqa: E731
            lambda n: torch.randn(n, C, generator=g, dtype=torch.float64))
        u_idx = torch.arange(step * B_U, (step + 1) * B_U) % 64
        return Batch(x(B_L), y(B_L), x(B_U), u_idx, x(B_H) if holdout else None, y(B_H) if holdout else None)

    return algo, stepper, batch


def _bn_state(model) -> dict[str, torch.Tensor]:
    return {k: b.detach().clone() for k, b in model.named_buffers()}


def _grads(model) -> list[torch.Tensor | None]:
    return [None if p.grad is None else p.grad.detach().clone() for p in model.parameters()]


def _guard(algo, method: str, seen: list) -> None:
    """Wrap ``algo.rule.<method>`` so each call checks that it left BN statistics, ``.grad``
    and the train mode as it found them."""
    inner = getattr(algo.rule, method)

    def checked(*args, **kwargs):
        bn, grads, mode = _bn_state(algo.model), _grads(algo.model), algo.model.training
        out = inner(*args, **kwargs)
        for k, b in algo.model.named_buffers():
            assert torch.equal(b, bn[k]), f"{method} changed BatchNorm buffer {k}"
        for p, before in zip(algo.model.parameters(), grads):
            assert (p.grad is None) == (before is None), f"{method} created or dropped a .grad"
            assert before is None or torch.equal(p.grad, before), f"{method} wrote into .grad"
        assert algo.model.training == mode, f"{method} left the model in another mode"
        seen.append(method)
        return out

    setattr(algo.rule, method, checked)


@pytest.mark.parametrize("name,task", CASES)
def test_template_runs_after_step_and_meta_passes_touch_no_state(name, task, monkeypatch):
    algo, stepper, batch = _make(name, "cnn_small_bn", (1, 8, 8), task=task)
    base = type(algo).base_class
    calls = []
    original = base.after_step
    monkeypatch.setattr(base, "after_step", lambda self, step: (calls.append(step), original(self, step))[1])
    seen: list = []
    _guard(algo, "meta_step", seen)
    if isinstance(algo.rule, TwoUpdateRule):
        _guard(algo, "after_update", seen)
    bn_start = _bn_state(algo.model)
    for step in range(2):
        algo.model.train()
        out = algo.train_step(batch(step), step, stepper)
        assert all(torch.isfinite(torch.as_tensor(float(v))) for v in out.values()), out
    assert calls == [0, 1], "the base's after_step must run exactly once per iteration"
    assert seen.count("meta_step") == 2
    # not vacuous: the training forwards did move the BatchNorm statistics
    assert any(not torch.equal(b, bn_start[k]) for k, b in algo.model.named_buffers() if "running" in k)


# -- 2 workers == 1 worker, every pair ---------------------------------------------------------------
def _two_steps_of_every_pair(comm) -> dict:
    """Parameters of every pair after two iterations on ``comm`` (BN-free MLP, float64)."""
    out = {}
    for name, task in CASES:
        algo, stepper, batch = _make(name, "mlp", (D,), comm, task)
        for step in range(2):
            algo.train_step(batch(step), step, stepper)
        out[f"{name}/{task}"] = {n: p.detach().clone() for n, p in algo.model.named_parameters()}
    return out


@pytest.fixture(scope="module")
def parallel_and_single():
    torch.set_num_threads(1)
    return run_workers(_two_steps_of_every_pair, meanwhile=lambda: _two_steps_of_every_pair(Comm()))


@pytest.mark.parametrize("name,task", CASES)
def test_two_workers_equal_one_worker(name, task, parallel_and_single):
    (rank0, rank1), single = parallel_and_single
    name = f"{name}/{task}"
    moved = 0.0
    torch.manual_seed(0)  # the runs' initial weights
    init = dict(build_network("mlp", (D,), C).double().named_parameters())
    for n, ref in single[name].items():
        assert (rank0[name][n] == rank1[name][n]).all(), n
        torch.testing.assert_close(torch.from_numpy(rank0[name][n]), ref, rtol=1e-9, atol=1e-11, msg=f"{name} {n}")
        moved = max(moved, float((ref - init[n].detach()).abs().max()))
    assert moved > 1e-4, "training did not move the weights: the comparison would be vacuous"
