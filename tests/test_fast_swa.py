"""Mean Teacher + fast-SWA (Athiwaratkun et al., ICLR 2019) against hand computations.

Oracles: the average of student snapshots taken by the test at the steps the paper's rule
names (n >= S, (n - S) % k == 0); the cyclic learning rate written out from the cosine formula;
BatchNorm statistics as the plain mean over batches of each batch's per-channel mean and
unbiased variance, read with forward hooks; and runs with the option off.
"""
from __future__ import annotations

import copy
import io
import math

import numpy as np
import pytest
import torch
from torch import nn

from algorithms import Batch, Stepper, TrainContext, parse_hparams
from algorithms.hparams import ConfigError
from algorithms.mean_teacher import MeanTeacher
from algorithms.networks import build_network
from tests.gloo import run_workers

C = 10
SHAPE = (1, 8, 8)
LR = 0.1


def _hp(**kw):
    values = {"rampup": "none", "ema_decay": 0.9}
    values.update(kw)
    return parse_hparams("mean_teacher", values)


def _batch(i: int, b_l: int = 8, b_u: int = 16, dtype=torch.float32) -> Batch:
    g = torch.Generator().manual_seed(1000 + i)
    return Batch(torch.randn(b_l, *SHAPE, generator=g, dtype=dtype), torch.randint(0, C, (b_l,), generator=g),
                 torch.randn(b_u, *SHAPE, generator=g, dtype=dtype))


def _noise(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return x + 0.3 * torch.randn(x.shape, generator=g, dtype=x.dtype)


def _dropout_bn_net() -> nn.Module:
    # BatchNorm and dropout: update_bn on the average must leave the student and the RNG alone
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, C))


def _algo(hp, total_steps, net="cnn_small", seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    model = _dropout_bn_net() if net == "dropout_bn" else build_network(net, SHAPE, C)
    model = model.to(dtype)
    ctx = TrainContext(C, total_steps, augment=_noise, generator=torch.Generator().manual_seed(seed + 1))
    return MeanTeacher(model, hp, ctx)


def _cosine(s: int, total: int) -> float:
    return 0.5 * (1.0 + math.cos(math.pi * s / total))


def _stepper(algo, schedule_total: int | None = None) -> Stepper:
    opt = torch.optim.SGD(algo.model.parameters(), lr=LR, momentum=0.9)
    sched = None if schedule_total is None else torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _cosine(s, schedule_total))
    return Stepper(algo.model, opt, sched, algo.ctx.comm)


def _params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _paper_average_steps(total: int, start: float, every: int) -> list[int]:
    """Update counts n after which fast-SWA averages: n >= S and (n - S) % k == 0."""
    s = round(start * total)
    return [n for n in range(1, total + 1) if n >= s and (n - s) % every == 0]


# ------------------------------------------------------------------------- averaging


def test_swa_weights_are_the_average_of_the_student_at_the_averaging_steps():
    total, start, every = 20, 0.5, 3
    algo = _algo(_hp(fast_swa=True, swa_start=start, swa_every=every), total)
    stepper = _stepper(algo)
    due = _paper_average_steps(total, start, every)
    assert due == [10, 13, 16, 19]
    snapshots = []
    for step in range(total):
        algo.train_step(_batch(step), step, stepper)
        if step + 1 < due[0]:
            assert algo.eval_models() == {}, "no SWA model before the first average"
        if step + 1 in due:
            snapshots.append(_params(algo.model))
    swa = algo.eval_models()["swa"]
    assert int(algo.swa.n_averaged) == len(due)
    got = dict(swa.named_parameters())
    for name in snapshots[0]:
        expected = torch.stack([s[name] for s in snapshots]).mean(0)
        torch.testing.assert_close(got[name].detach(), expected, rtol=1e-5, atol=1e-6, msg=name)
    # not vacuous: the student moved between snapshots, so the average is none of them
    name = next(iter(snapshots[0]))
    assert not torch.allclose(snapshots[0][name], snapshots[-1][name])
    assert not torch.allclose(got[name], algo.model.get_parameter(name))


def test_fast_swa_off_or_without_cycles_trains_exactly_like_plain_mean_teacher():
    """Off (default or explicit) and on-without-cycles (with update_bn called every step, as an
    eager engine would) give bit-identical students, teachers and random streams."""
    total = 12
    assert parse_hparams("mean_teacher", {}).fast_swa is False
    runs = {}
    for label, hp in (("absent", _hp()), ("off", _hp(fast_swa=False)),
                      ("on", _hp(fast_swa=True, swa_start=0.25, swa_every=1, swa_bn_batches=2))):
        algo = _algo(hp, total, net="dropout_bn")
        torch.manual_seed(123)  # dropout's stream
        stepper = _stepper(algo, schedule_total=total)
        called = 0
        for step in range(total):
            algo.train_step(_batch(step), step, stepper)
            called += bool(algo.eval_models())
        runs[label] = (algo, torch.get_rng_state(), algo.ctx.generator.get_state(), called)
    plain, on = runs["absent"][0], runs["on"][0]
    assert plain.eval_models() == {} and set(plain.state_dict()) == {"teacher"}
    assert runs["on"][3] == 10  # averaging from step 3 of 12: update_bn really ran
    for label in ("off", "on"):
        algo, rng, gen, _ = runs[label]
        for a, b in ((plain.model, algo.model), (plain.teacher.model, algo.teacher.model)):
            for (k, v), w in zip(a.state_dict().items(), b.state_dict().values()):
                assert torch.equal(v, w), (label, k)
        assert torch.equal(rng, runs["absent"][1]), label
        assert torch.equal(gen, runs["absent"][2]), label
    # the SWA model's BN statistics were recomputed, not copied from the student
    bn_s, bn_a = plain.model[2], on.swa.module[2]
    assert not torch.allclose(bn_s.running_mean, bn_a.running_mean)


def test_cyclic_learning_rate_repeats_the_schedule_segment_after_swa_start():
    """lr(t) = lr0 * cos_sched(t) before S, lr0 * cos_sched(S + (t - S) mod c) from S on (paper:
    each cycle repeats the base schedule's last segment of length c before l, with l - c = S)."""
    total, start, cycle = 30, 0.4, 5
    s0 = round(start * total)
    plain = [LR * _cosine(t, total) for t in range(total)]
    cyclic = [LR * _cosine(t if t < s0 else s0 + (t - s0) % cycle, total) for t in range(total)]
    assert cyclic[s0 + cycle] > cyclic[s0 + cycle - 1]  # the oracle restarts each cycle
    for swa_cycle, expected in ((cycle, cyclic), (0, plain)):
        algo = _algo(_hp(fast_swa=True, swa_start=start, swa_every=2, swa_cycle=swa_cycle), total)
        stepper = _stepper(algo, schedule_total=total)
        used = []
        stepper.optimizer.register_step_pre_hook(lambda opt, args, kwargs: used.append(opt.param_groups[0]["lr"]))
        for step in range(total):
            algo.train_step(_batch(step), step, stepper)
        assert used == pytest.approx(expected, rel=1e-12, abs=1e-15), swa_cycle
        # the optimizer is left with the schedule's own lr (checkpoints hold no cyclic state)
        assert stepper.optimizer.param_groups[0]["lr"] == pytest.approx(LR * _cosine(total, total), abs=1e-15)


# ------------------------------------------------------------------------- BatchNorm


def _bn_stats_by_hand(model: nn.Module, inputs: list[torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per BN layer: mean over batches of (per-channel batch mean, unbiased batch variance) of
    the layer's input in a train-mode forward (what a cumulative running average holds)."""
    model = copy.deepcopy(model).train()
    seen: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
    hooks = []
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            def hook(mod, args, name=name):
                x = args[0]
                dims = [d for d in range(x.dim()) if d != 1]
                seen.setdefault(name, []).append((x.mean(dims), x.var(dims, unbiased=True)))
            hooks.append(m.register_forward_pre_hook(hook))
    with torch.no_grad():
        for x in inputs:
            model(x)
    for h in hooks:
        h.remove()
    return {n: (torch.stack([m for m, _ in v]).mean(0), torch.stack([v_ for _, v_ in v]).mean(0)) for n, v in seen.items()}


def test_swa_batchnorm_statistics_are_recomputed_on_the_last_global_batches():
    total, keep = 12, 3
    algo = _algo(_hp(fast_swa=True, swa_start=0.5, swa_every=2, swa_bn_batches=keep), total, net="cnn_small_bn",
                 dtype=torch.float64)
    stepper = _stepper(algo)
    due = _paper_average_steps(total, 0.5, 2)
    snapshots, batches = [], []
    for step in range(total):
        batch = _batch(step, dtype=torch.float64)
        batches.append(torch.cat([batch.x_l, batch.x_u]))
        algo.train_step(batch, step, stepper)
        if step + 1 in due:
            snapshots.append(_params(algo.model))
    student_bn = {k: v.clone() for k, v in algo.model.state_dict().items() if "running" in k}
    swa = algo.eval_models()["swa"]
    # reference network: the hand-averaged weights, statistics from the last `keep` batches
    ref = copy.deepcopy(algo.model)
    with torch.no_grad():
        for name, p in ref.named_parameters():
            p.copy_(torch.stack([s[name] for s in snapshots]).mean(0))
    expected = _bn_stats_by_hand(ref, batches[-keep:])
    assert len(expected) >= 2
    modules = dict(swa.named_modules())
    for name, (mean, var) in expected.items():
        bn = modules[name]
        torch.testing.assert_close(bn.running_mean, mean, rtol=1e-9, atol=1e-10, msg=name)
        torch.testing.assert_close(bn.running_var, var, rtol=1e-9, atol=1e-10, msg=name)
        assert int(bn.num_batches_tracked) == keep
        assert bn.momentum == algo.model.get_submodule(name).momentum  # restored after the cumulative pass
    for k, v in algo.model.state_dict().items():  # the student's statistics are untouched
        if k in student_bn:
            assert torch.equal(v, student_bn[k]), k
    # idempotent: asking again (nothing trained in between) gives the same statistics
    again = algo.eval_models()["swa"]
    for name, (mean, _) in expected.items():
        torch.testing.assert_close(dict(again.named_modules())[name].running_mean, mean, rtol=1e-9, atol=1e-10)


# ------------------------------------------------------------------------- checkpoints


def _save(obj):
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)


def test_resume_from_a_checkpoint_equals_an_uninterrupted_run():
    """Averages, n_averaged, cyclic lr and the batches kept for update_bn survive a checkpoint:
    evaluating 2 steps after the resume (fewer than swa_bn_batches) needs the saved batches."""
    total, cut = 16, 8
    hp = _hp(fast_swa=True, swa_start=0.25, swa_every=2, swa_cycle=4, swa_bn_batches=5)

    def run(algo, stepper, steps, evals):
        out = {}
        for step in steps:
            algo.train_step(_batch(step), step, stepper)
            if step + 1 in evals:
                out[step + 1] = {k: v.clone() for k, v in algo.eval_models()["swa"].state_dict().items()}
        return out

    full = _algo(hp, total, net="cnn_small_bn")
    full_stepper = _stepper(full, schedule_total=total)
    ref = run(full, full_stepper, range(total), {cut, cut + 2, total})

    first = _algo(hp, total, net="cnn_small_bn")
    first_stepper = _stepper(first, schedule_total=total)
    run(first, first_stepper, range(cut), {cut})
    state = _save({"algo": first.state_dict(), "model": first.model.state_dict(),
                   "opt": first_stepper.optimizer.state_dict(), "sched": first_stepper.scheduler.state_dict(),
                   "gen": first.ctx.generator.get_state()})
    resumed = _algo(hp, total, net="cnn_small_bn", seed=5)  # other initial weights: the load must overwrite them
    stepper = _stepper(resumed, schedule_total=total)
    resumed.model.load_state_dict(state["model"])
    stepper.optimizer.load_state_dict(state["opt"])
    stepper.scheduler.load_state_dict(state["sched"])
    resumed.ctx.generator.set_state(state["gen"])
    resumed.load_state_dict(state["algo"])
    assert int(resumed.swa.n_averaged) == int(first.swa.n_averaged) > 0
    got = run(resumed, stepper, range(cut, total), {cut + 2, total})
    for n in (cut + 2, total):
        for k, v in ref[n].items():
            assert torch.equal(v, got[n][k]), (n, k)


def test_invalid_fast_swa_hyperparameters_are_rejected():
    for bad in ({"swa_start": 1.0}, {"swa_start": -0.1}, {"swa_every": 0}, {"swa_cycle": -1},
                {"swa_cycle": 3, "swa_every": 5}, {"swa_bn_batches": 0}, {"fast_swa": "yes"}):
        with pytest.raises(ConfigError, match="mean_teacher|fast_swa"):
            parse_hparams("mean_teacher", bad)


# ------------------------------------------------------------------------- engine
# (bench imports stay inside the tests: the data-parallel workers below re-import this module)


def _cfg(**hp):
    from bench.config import RunConfig

    return RunConfig.from_dict(dict(
        dataset="digits", algorithm="mean_teacher", network="cnn_small_bn", n_labels=50, steps=30, eval_every=10,
        batch_labeled=16, batch_unlabeled=32, ema_decay=0.9, optim={"name": "sgd", "lr": 0.05},
        hparams={"rampup": "none", **hp}))


class _Recorder:
    def __init__(self):
        self.metrics = []

    def report(self, metrics):
        self.metrics.append(dict(metrics))


def test_engine_evaluates_the_swa_model_and_leaves_ema_and_raw_rows_unchanged(tmp_path):
    from bench.config import RunEnv
    from bench.engine import train_run

    env = RunEnv(str(tmp_path))
    plain = train_run(_cfg(), env, write=False)
    rec = _Recorder()
    swa = train_run(_cfg(fast_swa=True, swa_start=0.5, swa_every=2), env, reporter=rec, write=False)
    assert plain.status == swa.status == "ok", swa.run_row["error_message"]
    key = lambda r: (r["step"], r["split"], r["model"])  # noqa: E731
    swa_rows = {key(r): r for r in swa.eval_rows}
    # averaging starts after 15 of 30 steps: "swa" rows at the evaluations from step 20 on
    assert sorted(k for k in swa_rows if k[2] == "swa") == [(s, sp, "swa") for s in (20, 30) for sp in ("test", "train", "val")]
    for r in plain.eval_rows:  # averaging never touches the training: ema/raw rows are identical
        assert swa_rows[key(r)]["error"] == r["error"] and swa_rows[key(r)]["loss"] == r["loss"], key(r)
    assert ["val_error_swa" in m for m in rec.metrics] == [False, True, True]
    assert all("test" not in k for m in rec.metrics for k in m)
    assert rec.metrics[-1]["val_error_swa"] == swa_rows[(30, "val", "swa")]["error"]
    # the run row's errors stay the EMA model's (protocol)
    assert swa.run_row["test_error"] == plain.run_row["test_error"]


def test_engine_resume_with_fast_swa_cycles_equals_uninterrupted(tmp_path):
    from bench.config import RunEnv
    from bench.engine import train_run

    from tests.resume_helpers import Stop, StopAt, last_checkpoint

    hp = dict(fast_swa=True, swa_start=0.2, swa_every=2, swa_cycle=6, swa_bn_batches=12)
    full = train_run(_cfg(**hp), RunEnv(str(tmp_path / "full")), write=False)
    env = RunEnv(str(tmp_path / "res"), checkpoint_every_min=0)  # a checkpoint in the store after every step
    with pytest.raises(Stop):
        train_run(_cfg(**hp), env, reporter=StopAt(20))
    mid = last_checkpoint(env, _cfg(**hp).resolved().run_id)
    assert mid["step"] == 19 and int(mid["algo"]["swa"]["n_averaged"]) > 0
    resumed = train_run(_cfg(**hp), env)
    assert full.status == resumed.status == "ok" and resumed.run_row["resumed_from_step"] == 19
    assert [(r["step"], r["split"], r["model"], r["error"], r["loss"]) for r in full.eval_rows] == \
        [(r["step"], r["split"], r["model"], r["error"], r["loss"]) for r in resumed.eval_rows]
    assert any(r["model"] == "swa" and r["step"] == 30 for r in resumed.eval_rows)


def test_swa_rows_pass_the_results_schema(tmp_path):
    from results.schema import evals_table

    rows = [{"run_id": "r1", "step": 10, "split": "val", "model": "swa", "error": 0.5, "loss": 1.0}]
    assert evals_table(rows, run_id="r1").num_rows == 1


# ------------------------------------------------------------------------- data parallel

def _swa_on_worker(comm) -> tuple[dict, dict]:
    """Worker body: 8 fast-SWA steps; the SWA model's and the student's state dicts."""
    torch.manual_seed(0)
    model = build_network("cnn_small_bn", SHAPE, C)
    ctx = TrainContext(C, 8, comm=comm, augment=_noise, generator=torch.Generator().manual_seed(1))
    algo = MeanTeacher(model, _hp(fast_swa=True, swa_start=0.25, swa_every=2, swa_bn_batches=3), ctx)
    stepper = _stepper(algo)
    for step in range(8):
        algo.train_step(_batch(step), step, stepper)
    return algo.eval_models()["swa"].state_dict(), algo.model.state_dict()


def test_data_parallel_workers_hold_the_same_swa_model():
    """Parameters are the same everywhere; the student's BN statistics are per shard, yet the SWA
    model's, recomputed on global batches, are identical on both workers."""
    got, _ = run_workers(_swa_on_worker, timeout=180)
    (swa0, student0), (swa1, student1) = got[0], got[1]
    assert swa0.keys() == swa1.keys()
    for k in swa0:
        np.testing.assert_array_equal(swa0[k], swa1[k], err_msg=k)
    assert any("running_mean" in k and not np.array_equal(student0[k], student1[k]) for k in student0), \
        "students' BN statistics were expected to differ per shard (else the check above is vacuous)"
