"""The step schedule (x gamma at each milestone, after the linear warm-up) and run-id stability."""
from __future__ import annotations

import pytest
import torch

from algorithms import ConfigError
from bench.config import RunConfig
from bench.optim import make_optimizer


def _cfg(**optim):
    return RunConfig.from_dict(dict(dataset="digits", algorithm="supervised", network="cnn_small", n_labels=50,
                                    steps=100, optim=optim))


def _lrs(cfg, n):
    opt, sched = make_optimizer(torch.nn.Linear(2, 2), cfg)
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_step_schedule_with_warm_up_matches_the_hand_computed_rates():
    cfg = _cfg(name="sgd", lr=0.1, nesterov=False, schedule="step", milestones=[30, 60], gamma=0.1, warmup_steps=4)
    lrs = _lrs(cfg, 70)
    want = [0.1 * (t + 1) / 4 for t in range(4)] + [0.1] * 26 + [0.01] * 30 + [0.001] * 10
    assert lrs == pytest.approx(want, rel=1e-12)


def test_milestones_are_checked_and_need_the_step_schedule():
    for bad, text in (({"schedule": "step"}, "needs milestones"), ({"schedule": "cosine", "milestones": [5]}, "need schedule"),
                      ({"schedule": "step", "milestones": [5, 3]}, "increasing"),
                      ({"schedule": "step", "milestones": [0]}, "positive"),
                      ({"schedule": "step", "milestones": [5], "gamma": 0.0}, "gamma")):
        with pytest.raises(ConfigError, match=text):
            _cfg(**bad)
    assert _cfg(schedule="step", milestones=[5]).optim.milestones == (5,)  # lists become tuples (hashable, equal)


def test_run_ids_of_configs_without_the_new_fields_did_not_change():
    # run ids computed at the commit before milestones / gamma existed (728cb60)
    a = RunConfig.from_dict(dict(dataset="cifar10", algorithm="mean_teacher", network="wrn28_2", n_labels=250,
                                 steps=100, optim=dict(name="adam", lr=0.002, weight_decay=0.0, schedule="constant",
                                                       warmup_steps=10)))
    b = RunConfig.from_dict(dict(dataset="digits", algorithm="pseudo_label+l2i_o", network="cnn_small", n_labels=50,
                                 steps=1000, preset="paper"))
    assert a.run_id == "3098ec7c42a8286d"
    # L2I's inner loss became its papers' (squared error to z from another view), so this config is
    # a different method now and must not reuse results recorded under its old id.
    assert b.run_id != "a64b8405f6ea7e08"
    assert RunConfig.from_dict({**b.to_dict(), "hparams": {"l2i_inner_loss": "base"}}).run_id != b.run_id
    step = RunConfig.from_dict({**a.to_dict(), "optim": dict(schedule="step", milestones=[50])})
    assert step.run_id != a.run_id
    assert RunConfig.from_dict({**a.to_dict(), "optim": {**a.to_dict()["optim"], "gamma": 0.5}}).run_id != a.run_id
