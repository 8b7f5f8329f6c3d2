"""Exact resume from the run's own checkpoint in the results store (bench.resume), without
Ray: an attempt stopped mid-run and started again ends with the numbers of an uninterrupted
run, on one worker and on two gloo workers (per-worker BatchNorm statistics included); a
checkpoint of other code or of another run is never used; a run whose rows were deleted is
either rewritten from its final checkpoint or retrained, never recorded with zero steps."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from bench.checkpoint import RunCheckpoints
from bench.config import RunConfig, RunEnv
from bench.engine import train_run
from results import ResultStore
from tests.gloo import run_workers
from tests.resume_helpers import Stop, StopAt, interrupted_then_resumed


def _cfg(algorithm: str = "mean_teacher", **kw) -> RunConfig:
    base = dict(dataset="digits", algorithm=algorithm, network="cnn_small_bn", n_labels=50, steps=40, eval_every=10,
                batch_labeled=16, batch_unlabeled=32, optim={"name": "adam", "lr": 0.003})
    return RunConfig.from_dict({**base, **kw}).resolved()


def _numbers(out) -> list:
    return [(r["step"], r["split"], r["model"], r["error"], r["loss"],
             tuple(sorted((k, v) for k, v in r.items() if k.startswith("diag_")))) for r in out.eval_rows]


@pytest.mark.parametrize("algorithm", ["mean_teacher", "pseudo_label+meta_semi"])
def test_interrupted_run_resumes_exactly_from_between_evaluations(algorithm, tmp_path):
    cfg = _cfg(algorithm)
    ref = train_run(cfg, RunEnv(str(tmp_path / "ref")))
    env = RunEnv(str(tmp_path / "res"), checkpoint_every_min=0)  # a checkpoint after every step
    out = interrupted_then_resumed(cfg, env, stop_at=30)
    # The stop came at the evaluation of step 30, before its checkpoint: the resume starts at 29,
    # between evaluations, with the diagnostics summed since step 20 restored.
    assert out.status == "ok" and out.run_row["resumed_from_step"] == 29 and out.run_row["attempts"] == 2
    assert "resumed from step 29" in out.note
    assert _numbers(out) == _numbers(ref)
    for k, v in ref.model_state.items():
        np.testing.assert_array_equal(out.model_state[k].numpy(), v.numpy(), err_msg=k)
    row = ResultStore(env.results_dir).load_runs().iloc[0]
    assert row["test_error"] == ref.run_row["test_error"] and row["steps_done"] == 40
    assert row["wall_time_s"] > row["last_attempt_wall_time_s"] > 0  # both attempts counted
    assert not (tmp_path / "res" / "checkpoints").exists()  # spent once the rows are written


@pytest.mark.parametrize("algorithm", ["mean_teacher+meta_semi", "mean_teacher+l2rw"])
def test_resume_between_diagnostics_steps_reports_the_last_measured_ratio(algorithm, tmp_path):
    """The reweighting rules measure Assumption 1's ratio every diag_every steps and report the
    last value in between: it travels with the checkpoint, so a resume at step 29 (ratio last
    measured at step 20) reports what the uninterrupted run reports."""
    cfg = _cfg(algorithm, hparams={"diag_every": 20})
    ref = train_run(cfg, RunEnv(str(tmp_path / "ref")))
    out = interrupted_then_resumed(cfg, RunEnv(str(tmp_path / "res"), checkpoint_every_min=0), stop_at=30)
    assert out.status == "ok" and out.run_row["resumed_from_step"] == 29
    ratio = [r["diag_assumption1_ratio"] for r in ref.eval_rows if r["split"] == "val" and r["model"] == "ema"]
    assert ratio[2] > 0  # steps 21-30 report the ratio measured at step 20
    assert _numbers(out) == _numbers(ref)


def _two_workers(comm, root: str) -> dict:
    cfg = _cfg("pi_model", batch_labeled=16, batch_unlabeled=32)
    ref = train_run(cfg, RunEnv(f"{root}/ref"), comm=comm)
    out = interrupted_then_resumed(cfg, RunEnv(f"{root}/res", checkpoint_every_min=0), 20, comm=comm)
    return {"ref": _numbers(ref), "out": _numbers(out), "resumed": out.run_row["resumed_from_step"],
            "ref_state": ref.model_state, "out_state": out.model_state}


def test_two_workers_resume_exactly_each_with_its_own_state(tmp_path):
    (r0, r1), _ = run_workers(_two_workers, str(tmp_path))
    for r in (r0, r1):
        assert r["resumed"] == 19
        assert r["out"] == r["ref"]
        for k in r["ref_state"]:
            np.testing.assert_array_equal(r["out_state"][k], r["ref_state"][k], err_msg=k)
    # BatchNorm statistics differ between the workers (each saw its shard): each resumed its own
    bn = [k for k in r0["ref_state"] if k.endswith("running_mean")]
    assert bn and any(not np.array_equal(r0["ref_state"][k], r1["ref_state"][k]) for k in bn)


def _stop_and_edit_manifest(cfg: RunConfig, env: RunEnv, **changes) -> None:
    with pytest.raises(Stop):
        train_run(cfg, env, reporter=StopAt(20))
    ck = RunCheckpoints(env.results_dir, cfg.run_id)
    ck.write_manifest({**ck.manifest(), **changes})


@pytest.mark.parametrize("changes, says", [({"code_version": "0123456789abcdef"}, "written by other code"),
                                           ({"run_id": "ffffffffffffffff"}, "belongs to run"),
                                           ({"world_size": 2}, "written by 2 workers")])
def test_a_checkpoint_of_other_code_or_another_run_is_not_used(changes, says, tmp_path):
    cfg = _cfg("supervised", steps=30)
    ref = train_run(cfg, RunEnv(str(tmp_path / "ref")))
    env = RunEnv(str(tmp_path / "res"), checkpoint_every_min=0)
    _stop_and_edit_manifest(cfg, env, **changes)
    out = train_run(cfg, env)
    assert out.run_row["resumed_from_step"] == 0 and out.run_row["attempts"] == 1
    assert says in out.note and _numbers(out) == _numbers(ref)


def test_deleted_rows_are_rewritten_from_the_final_checkpoint_or_retrained_never_zero_steps(tmp_path):
    cfg = _cfg("supervised", steps=30)
    env = RunEnv(str(tmp_path / "res"), keep_checkpoints=True)
    first = train_run(cfg, env)
    store = ResultStore(env.results_dir)
    first_row = store.load_runs().iloc[0]
    ck = RunCheckpoints(env.results_dir, cfg.run_id)
    assert ck.manifest()["step"] == 30  # the final checkpoint is kept

    for sub in ("runs", "evals"):
        os.remove(tmp_path / "res" / sub / f"{cfg.run_id}.parquet")
    again = train_run(cfg, RunEnv(env.results_dir))  # rows rewritten from the final checkpoint
    row = store.load_runs().iloc[0]
    assert "rows rewritten from its final checkpoint" in again.note
    assert row["steps_done"] == 30 and row["resumed_from_step"] == 30 and row["attempts"] == 2
    assert row["test_error"] == first_row["test_error"] and _numbers(again) == _numbers(first)
    assert row["wall_time_s"] >= first_row["wall_time_s"]  # the training attempt's time is still counted
    assert ck.manifest() is None  # spent now (no --keep-checkpoints this time)

    for sub in ("runs", "evals"):
        os.remove(tmp_path / "res" / sub / f"{cfg.run_id}.parquet")
    retrained = train_run(cfg, RunEnv(env.results_dir))  # no checkpoint: trains from step 0
    row = store.load_runs().iloc[0]
    assert row["steps_done"] == 30 and row["resumed_from_step"] == 0 and row["attempts"] == 1
    assert _numbers(retrained) == _numbers(first)


def test_attempts_that_die_before_their_first_checkpoint_are_counted(tmp_path):
    cfg = _cfg("supervised", steps=30)
    env = RunEnv(str(tmp_path / "res"))  # 10 minutes: no checkpoint before the end
    for _ in range(2):
        with pytest.raises(Stop):
            train_run(cfg, env, reporter=StopAt(10))
    manifest = json.loads((tmp_path / "res" / "checkpoints" / cfg.run_id / "manifest.json").read_text())
    assert manifest["step"] == 0 and manifest["attempts"] == 2
    out = train_run(cfg, env)
    assert out.run_row["attempts"] == 3 and out.run_row["resumed_from_step"] == 0
