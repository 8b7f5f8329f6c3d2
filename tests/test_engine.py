"""The run function without Ray: reproducibility, resume, failure and divergence handling."""
from __future__ import annotations

import math
import tempfile

import pytest
import torch

from bench.checkpoint import load_state, save_state
from bench.config import RunConfig, RunEnv
from bench.engine import train_run
from results import ResultStore


def _cfg(**kw):
    base = dict(dataset="two_circles", algorithm="mean_teacher", network="mlp", n_labels=50, steps=40, eval_every=10,
                batch_labeled=16, batch_unlabeled=32, optim={"name": "adam", "lr": 0.01, "schedule": "constant"})
    base.update(kw)
    return RunConfig.from_dict(base)


class Recorder:
    """A reporter that keeps every report and can hand back the state of a chosen one."""

    def __init__(self, restore_state=None):
        self.metrics, self.states, self._restore = [], [], restore_state

    def report(self, metrics, state):
        self.metrics.append(dict(metrics))
        if state is not None:  # serialise now, as a real checkpoint does: the live tensors keep changing
            with tempfile.TemporaryDirectory() as d:  # and through the same safe path (weights_only=True)
                save_state(state, d)
                state = load_state(d)
        self.states.append(state)

    def restore(self):
        return self._restore


def test_same_seed_same_numbers_and_split(tmp_path):
    a = train_run(_cfg(), RunEnv(str(tmp_path)), write=False)
    b = train_run(_cfg(), RunEnv(str(tmp_path)), write=False)
    assert a.status == b.status == "ok"
    assert a.run_row["split_hash"] == b.run_row["split_hash"]
    assert [r["error"] for r in a.eval_rows] == [r["error"] for r in b.eval_rows]
    for k in a.model_state:
        assert torch.equal(a.model_state[k], b.model_state[k])
    c = train_run(_cfg(seed=1, split_seed=0), RunEnv(str(tmp_path)), write=False)
    assert c.run_row["split_hash"] == a.run_row["split_hash"]  # split seed, not training seed, picks the split
    assert any(not torch.equal(a.model_state[k], c.model_state[k]) for k in a.model_state)


def test_reporter_never_sees_test_metrics(tmp_path):
    rec = Recorder()
    out = train_run(_cfg(), RunEnv(str(tmp_path)), reporter=rec, write=False)
    assert out.status == "ok" and len(rec.metrics) == 4
    assert all("test" not in key for m in rec.metrics for key in m)
    assert {r["split"] for r in out.eval_rows} == {"val", "test"}
    assert {r["model"] for r in out.eval_rows} == {"ema", "raw"}


def test_resume_from_checkpoint_equals_uninterrupted(tmp_path):
    full = train_run(_cfg(algorithm="meta_semi"), RunEnv(str(tmp_path)), reporter=Recorder(), write=False)
    first = Recorder()
    train_run(_cfg(algorithm="meta_semi"), RunEnv(str(tmp_path)), reporter=first, write=False)
    mid_state = first.states[1]  # after 20 of 40 steps
    assert mid_state["step"] == 20
    resumed = train_run(_cfg(algorithm="meta_semi"), RunEnv(str(tmp_path)), reporter=Recorder(mid_state), write=False)
    assert resumed.status == "ok" and resumed.run_row["steps_done"] == 40
    for k in full.model_state:
        assert torch.allclose(full.model_state[k], resumed.model_state[k], atol=1e-6), k
    assert [r["error"] for r in full.eval_rows] == pytest.approx([r["error"] for r in resumed.eval_rows])


def test_divergence_is_recorded_and_written(tmp_path):
    out = train_run(_cfg(algorithm="supervised", optim={"name": "sgd", "lr": 1e6, "momentum": 0.0}), RunEnv(str(tmp_path)))
    assert out.status == "diverged"
    assert "not finite" in out.run_row["error_message"]
    runs = ResultStore(tmp_path).load_runs()
    assert list(runs["status"]) == ["diverged"]


def test_failure_is_recorded_not_raised(tmp_path):
    out = train_run(_cfg(dataset="cifar10", network="wrn28_2"), RunEnv(str(tmp_path), data_root=str(tmp_path / "none")))
    assert out.status == "failed"
    assert "\n" not in out.run_row["error_message"] and out.run_row["error_message"]
    runs = ResultStore(tmp_path).load_runs()
    assert list(runs["status"]) == ["failed"] and math.isnan(runs["test_error"][0])


def test_a_new_extra_model_name_is_evaluated_and_written(tmp_path, monkeypatch):
    """An algorithm's eval_models() may use a name the schema has never seen: the finished run
    is written, with that model's rows (a malformed name is still refused)."""
    import algorithms.registry as registry
    from algorithms.pseudo_label import PseudoLabel
    from results.schema import evals_table

    class WithPolyak(PseudoLabel):
        name = "pseudo_label_polyak"

        def eval_models(self):
            return {"polyak_avg": self.model}

    monkeypatch.setitem(registry._REGISTRY, WithPolyak.name, WithPolyak)
    out = train_run(_cfg(algorithm=WithPolyak.name, steps=20), RunEnv(str(tmp_path)))
    assert out.status == "ok", out.run_row["error_message"]
    evals = ResultStore(tmp_path).load_evals()
    assert set(evals["model"]) == {"ema", "raw", "polyak_avg"}
    with pytest.raises(ValueError, match="model must be a name"):
        evals_table([{"run_id": "r", "step": 1, "split": "val", "model": "bad name", "error": 0.1, "loss": 1.0}], "r")
