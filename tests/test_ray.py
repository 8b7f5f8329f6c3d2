"""End to end through Ray: Tune grid, Parquet tables, skipping finished runs, Ray Train workers."""
from __future__ import annotations

import os

import pyarrow.parquet as pq
import pytest

from bench.run import main
from results import EVALS_REQUIRED, RUNS_REQUIRED, ResultStore

pytestmark = pytest.mark.ray


def test_suite_writes_tables_and_rerun_skips(tmp_path, capsys):
    results = tmp_path / "results"
    args = ["--suite", "smoke", "--datasets", "two_circles", "--algorithms", "supervised,meta_semi",
            "--results-dir", str(results), "--num-cpus", "2"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "2 to run" in out
    assert "two_circles" in out and "meta_semi" in out and "test error" in out

    runs_files = sorted((results / "runs").glob("*.parquet"))
    assert len(runs_files) == 2
    for f in runs_files:
        t = pq.read_table(f)
        assert set(RUNS_REQUIRED) <= set(t.column_names)
        assert t.column("status").to_pylist() == ["ok"]
        ev = pq.read_table(results / "evals" / f.name)
        assert set(EVALS_REQUIRED) <= set(ev.column_names)
        assert set(ev.column("model").to_pylist()) == {"ema", "raw"}
    evals = ResultStore(results).load_evals()
    ms = evals[evals["run_id"].isin(ResultStore(results).load_runs().query("algorithm == 'meta_semi'")["run_id"])]
    assert ms["diag_kept_fraction"].between(0, 1).all()

    mtimes = {f: os.stat(f).st_mtime_ns for f in runs_files}
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "2 already finished, 0 to run" in out
    assert sorted((results / "runs").glob("*.parquet")) == runs_files
    assert {f: os.stat(f).st_mtime_ns for f in runs_files} == mtimes  # nothing rewritten
    assert len(ResultStore(results).load_runs()) == 2  # no duplicates


def test_two_ray_train_workers_hold_identical_parameters(tmp_path, capsys):
    results = tmp_path / "results"
    args = ["--suite", "smoke", "--datasets", "digits", "--algorithms", "meta_semi", "--steps", "20",
            "--workers", "2", "--results-dir", str(results), "--num-cpus", "2"]
    assert main(args) == 0
    runs = ResultStore(results).load_runs()
    assert len(runs) == 1
    row = runs.iloc[0]
    assert row["status"] == "ok", row["error_message"]
    assert row["workers"] == 2 and row["steps_done"] == 20
    assert row["worker_param_divergence"] == 0.0
