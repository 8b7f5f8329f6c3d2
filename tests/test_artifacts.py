"""Per-run artifacts (RunConfig.artifacts): the same numbers with and without them, the final
EMA model's outputs checked against the run's own evaluation rows, atomic writes."""
from __future__ import annotations

import dataclasses
import os

import numpy as np
import pyarrow as pa
import pytest

import datasets
from bench.config import RunConfig, RunEnv
from bench.engine import train_run
from results import ResultsDirError, ResultStore
from results.artifacts import artifact_rows, artifact_table, load_artifacts, path_of, stack, write_artifacts


def _cfg(**kw) -> RunConfig:
    base = dict(dataset="two_circles", algorithm="pseudo_label", network="mlp", n_labels=50, steps=30, eval_every=10,
                batch_labeled=16, batch_unlabeled=32, optim={"name": "adam", "lr": 0.01, "schedule": "constant"})
    base.update(kw)
    return RunConfig.from_dict(base)


def _numbers(out) -> tuple:
    row = {k: v for k, v in out.run_row.items() if k in ("test_error", "val_error", "status", "steps_done")}
    evals = [(r["step"], r["split"], r["model"], r["error"], r["loss"]) for r in out.eval_rows]
    return row, evals


def test_artifacts_change_no_number_and_no_run_id(tmp_path):
    plain = _cfg()
    asked = _cfg(artifacts=["decision_grid", "features"])
    assert asked.artifacts == ("decision_grid", "features") and asked.run_id == plain.run_id
    a = train_run(plain, RunEnv(str(tmp_path / "a")))
    b = train_run(asked, RunEnv(str(tmp_path / "b")))
    assert a.status == b.status == "ok"
    assert _numbers(a) == _numbers(b)
    assert not os.path.exists(tmp_path / "a" / path_of(plain.run_id))
    assert os.path.exists(tmp_path / "b" / path_of(plain.run_id))


def test_the_artifacts_are_the_final_ema_models_outputs(tmp_path):
    """The labeled rows' predictions give the run's last ``train``/``ema`` error (computed by the
    engine's evaluation, independently); labels and inputs are the split's; the grid spans the data."""
    cfg = _cfg(artifacts=("decision_grid", "features"))
    out = train_run(cfg, RunEnv(str(tmp_path)))
    arts = load_artifacts(str(tmp_path), [cfg.run_id])[cfg.run_id]
    data = datasets.load("two_circles")
    split = datasets.make_split("two_circles", data.y_train, data.info.num_classes, 50,
                                datasets.resolve_n_val(data.info, 50, "scarce", None), cfg.split_seed)
    last = max(r["step"] for r in out.eval_rows)
    want = next(r["error"] for r in out.eval_rows if r["step"] == last and r["split"] == "train" and r["model"] == "ema")
    for kind in ("decision_grid", "features"):
        lab = arts[(arts["artifact"] == kind) & (arts["subset"] == "labeled")].sort_values("index")
        assert len(lab) == len(split.labeled) == 50
        assert np.array_equal(lab["label"].to_numpy().astype(int), data.y_train.numpy()[split.labeled])
        assert float((lab["pred"] != lab["label"]).mean()) == pytest.approx(want, abs=1e-12)
        assert np.allclose(stack(lab, "probs").sum(1), 1.0, atol=1e-5)
        test = arts[(arts["artifact"] == kind) & (arts["subset"] == "test")]
        assert len(test) == 500 and np.bincount(test["label"].to_numpy().astype(int)).tolist() == [250, 250]  # class-balanced
    grid = arts[(arts["artifact"] == "decision_grid") & (arts["subset"] == "grid")]
    xy = stack(grid, "x")
    assert len(grid) == 81 * 81 and grid["label"].isna().all()
    lab = arts[(arts["artifact"] == "decision_grid") & (arts["subset"] == "labeled")].sort_values("index")
    assert np.allclose(stack(lab, "x"), data.x_train.numpy()[split.labeled], atol=1e-6)  # index: place in the split
    assert (xy.min(0) < stack(lab, "x").min(0)).all() and (xy.max(0) > stack(lab, "x").max(0)).all()
    feats = stack(arts[(arts["artifact"] == "features") & (arts["subset"] == "test")], "features")
    assert feats.ndim == 2 and feats.shape[1] > 2 and np.isfinite(feats).all()


def test_a_decision_grid_needs_2d_inputs():
    cfg = _cfg(dataset="digits", network="cnn_small", artifacts=("decision_grid",))
    out = train_run(dataclasses.replace(cfg, steps=2, eval_every=1), RunEnv("unused"), write=False)
    assert out.status == "failed" and "decision_grid needs 2-D inputs" in out.run_row["error_message"]


def test_unknown_artifact_is_rejected():
    with pytest.raises(Exception, match="unknown artifacts \\['nope'\\]"):
        _cfg(artifacts=("nope",))


def _table(run_id: str) -> pa.Table:
    return artifact_table([artifact_rows(run_id, "features", "test", np.arange(3), label=np.zeros(3),
                                         probs=np.full((3, 2), 0.5), features=np.ones((3, 4)))])


def test_artifacts_are_written_whole_or_not_at_all(tmp_path, monkeypatch):
    store = ResultStore(str(tmp_path))
    write_artifacts(store, "r1", _table("r1"))
    before = open(tmp_path / path_of("r1"), "rb").read()
    import pyarrow.parquet as pq

    real = pq.write_table

    def half(table, where, **kw):  # writes a part of the file, then the disk is full
        real(table, where, **kw)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pq, "write_table", half)
    with pytest.raises(ResultsDirError) as e:
        write_artifacts(store, "r1", _table("r1"))
    assert "\n" not in str(e.value) and "No space left" in str(e.value) and "artifacts/r1.parquet" in str(e.value)
    assert open(tmp_path / path_of("r1"), "rb").read() == before  # the old table is intact
    assert os.listdir(tmp_path / "artifacts") == ["r1.parquet"]  # no temporary left behind


def test_a_run_whose_artifacts_cannot_be_written_records_nothing(tmp_path, monkeypatch):
    """The artifacts go first: a run that lacks them is never published as finished."""
    import bench.engine as engine

    def fail(store, run_id, table):
        raise ResultsDirError(f"could not write artifacts/{run_id}.parquet: disk full")

    monkeypatch.setattr(engine, "write_artifacts", fail)
    cfg = _cfg(steps=10, artifacts=("features",))
    out = train_run(cfg, RunEnv(str(tmp_path)))
    assert "disk full" in out.write_error
    assert cfg.run_id not in ResultStore(str(tmp_path)).finished_run_ids()
