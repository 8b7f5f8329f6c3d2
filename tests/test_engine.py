"""The run function without Ray: reproducibility, resume, failure and divergence handling."""
from __future__ import annotations

import math

import pytest
import torch

from bench.config import RunConfig, RunEnv
from bench.engine import train_run
from results import ResultStore
from tests.resume_helpers import Stop, StopAt, last_checkpoint


def _cfg(**kw):
    base = dict(dataset="two_circles", algorithm="mean_teacher", network="mlp", n_labels=50, steps=40, eval_every=10,
                batch_labeled=16, batch_unlabeled=32, optim={"name": "adam", "lr": 0.01, "schedule": "constant"})
    base.update(kw)
    return RunConfig.from_dict(base)


class Recorder:
    """A reporter that keeps every report (what Ray Tune would see)."""

    def __init__(self):
        self.metrics = []

    def report(self, metrics):
        self.metrics.append(dict(metrics))


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
    assert {r["split"] for r in out.eval_rows} == {"val", "test", "train"}
    assert {r["model"] for r in out.eval_rows} == {"ema", "raw"}


def test_eval_rows_carry_training_seconds_that_survive_a_resume(tmp_path):
    # (exact numbers after a resume: tests/test_resume.py)
    full = train_run(_cfg(algorithm="meta_semi"), RunEnv(str(tmp_path)), write=False)
    elapsed = {r["step"]: r["elapsed_s"] for r in full.eval_rows}
    steps = sorted(elapsed)
    assert all(elapsed[a] < elapsed[b] for a, b in zip(steps, steps[1:])) and elapsed[steps[0]] > 0
    # every row of one evaluation carries the same clock, and the last one is the run's training time
    assert all(r["elapsed_s"] == elapsed[r["step"]] for r in full.eval_rows)
    assert elapsed[40] == pytest.approx(40 / full.run_row["steps_per_s"], rel=1e-9)

    env = RunEnv(str(tmp_path / "res"), checkpoint_every_min=0)  # a checkpoint in the store after every step
    cfg = _cfg(algorithm="meta_semi").resolved()
    with pytest.raises(Stop):
        train_run(cfg, env, reporter=StopAt(30))  # killed at the evaluation of step 30, before its checkpoint: last at 29
    mid_state = last_checkpoint(env, cfg.run_id)
    assert mid_state["step"] == 29
    resumed = train_run(cfg, env)
    assert resumed.run_row["resumed_from_step"] == 29
    before = [r for r in resumed.eval_rows if r["step"] <= 29]
    assert [r["step"] for r in before] and before == [dict(r, run_id=cfg.run_id) for r in mid_state["eval_rows"]]
    after = {r["step"]: r["elapsed_s"] for r in resumed.eval_rows if r["step"] > 29}
    assert min(after.values()) > mid_state["train_seconds"] >= max(r["elapsed_s"] for r in before)


def test_train_split_is_the_labeled_set_evaluated_without_augmentation(tmp_path):
    import datasets
    from algorithms.networks import build_network

    cfg = _cfg(algorithm="supervised", steps=20)
    out = train_run(cfg, RunEnv(str(tmp_path)), write=False)
    data = datasets.load("two_circles")
    split = datasets.make_split("two_circles", data.y_train, data.info.num_classes, 50,
                                datasets.resolve_n_val(data.info, 50, "scarce", None), cfg.split_seed)
    model = build_network(cfg.network, data.info.input_shape, data.info.num_classes)
    model.load_state_dict(out.model_state)
    model.eval()
    lab = torch.from_numpy(split.labeled.copy())
    with torch.no_grad():
        logits = model(data.x_train[lab])
    wrong = float((logits.argmax(1) != data.y_train[lab]).double().mean())
    loss = float(torch.nn.functional.cross_entropy(logits, data.y_train[lab]))
    row = next(r for r in out.eval_rows if r["step"] == 20 and r["split"] == "train" and r["model"] == "raw")
    assert row["error"] == pytest.approx(wrong, abs=1e-12) and row["loss"] == pytest.approx(loss, rel=1e-5)
    assert {(r["split"], r["model"]) for r in out.eval_rows if r["step"] == 20} == {
        (s, m) for s in ("val", "test", "train") for m in ("ema", "raw")}


def test_n_test_evaluates_a_fixed_class_balanced_subset(tmp_path):
    import numpy as np

    import datasets
    from algorithms.networks import build_network
    from bench.sampling import balanced_subset

    y = np.array([0] * 50 + [1] * 30 + [2] * 5)
    # by hand: shares of 10; class 2 has only 5, its other 5 go 3 + 2 (then 1) to the others in class order
    assert np.bincount(y[balanced_subset(y, 31, seed=0)]).tolist() == [13, 13, 5]
    idx = balanced_subset(y, 30, seed=0)
    assert np.bincount(y[idx]).tolist() == [13, 12, 5]
    assert (balanced_subset(y, 30, seed=0) == idx).all() and len(set(idx.tolist())) == len(idx)
    cfg = _cfg(algorithm="supervised", steps=20, n_test=100)
    out = train_run(cfg, RunEnv(str(tmp_path)), write=False)
    data = datasets.load("two_circles")
    sub = torch.from_numpy(balanced_subset(data.y_test.numpy(), 100))
    assert np.bincount(data.y_test[sub].numpy()).tolist() == [50, 50]
    model = build_network(cfg.network, data.info.input_shape, data.info.num_classes)
    model.load_state_dict(out.model_state)
    with torch.no_grad():
        wrong = float((model(data.x_test[sub]).argmax(1) != data.y_test[sub]).double().mean())
    row = next(r for r in out.eval_rows if r["step"] == 20 and r["split"] == "test" and r["model"] == "raw")
    assert row["error"] == pytest.approx(wrong, abs=1e-12)


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
