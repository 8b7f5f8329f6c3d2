"""One Parquet schema any reader takes: a results directory holding many algorithms reads as
one table with pyarrow.dataset, DuckDB and polars with default options, every column
present; old directories still load (one note) and migrate; failed runs carry no headline
error; diagnostics are all-reduced over workers."""
from __future__ import annotations

import dataclasses
import json
import math

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from algorithms import get_algorithm, list_algorithms, list_rules
from bench.config import RunConfig, RunEnv
from bench.engine import train_run
from results import ResultStore
from results.migrate import main as migrate_main

# Every registered algorithm and every rule on one base: the hp_/diag_ columns of all of them.
ALGOS = list_algorithms() + [f"pseudo_label+{r}" for r in list_rules()]


def _cfg(name: str, **kw) -> RunConfig:
    base = dict(dataset="two_circles", algorithm=name, network="mlp", n_labels=50, steps=4, eval_every=2,
                batch_labeled=16, batch_unlabeled=32, optim={"name": "adam", "lr": 0.01})
    base.update(kw)
    return RunConfig.from_dict(base)


@pytest.fixture(scope="module")
def mixed_dir(tmp_path_factory):
    """Real engine runs of every algorithm (and a failed one) in one results directory."""
    root = tmp_path_factory.mktemp("mixed")
    for name in ALGOS:
        out = train_run(_cfg(name), RunEnv(str(root)))
        assert out.status == "ok" and not out.write_error, out.run_row["error_message"]
    return root


def _fields(path) -> dict[str, pa.DataType]:
    return {f.name: f.type for f in pq.read_schema(path)}


def test_every_file_has_one_schema_covering_every_algorithm(mixed_dir):
    for kind in ("runs", "evals"):
        schemas = [_fields(p) for p in sorted((mixed_dir / kind).glob("*.parquet"))]
        assert len(schemas) == len(ALGOS)
        assert all(s == schemas[0] for s in schemas)
    runs_cols = _fields(next((mixed_dir / "runs").glob("*.parquet")))
    evals_cols = _fields(next((mixed_dir / "evals").glob("*.parquet")))
    # The union of every registered class's hyperparameters and diagnostics, computed here from the classes.
    for name in ALGOS:
        for f in dataclasses.fields(get_algorithm(name).Hparams):
            assert f"hp_{f.name}" in runs_cols, (name, f.name)
    assert {"diag_loss", "diag_kept_fraction", "diag_vat_kl", "diag_holdout_loss_after"} <= set(evals_cols)
    assert "hparams_json" in runs_cols and "diagnostics" in evals_cols


def _expected_hp(mixed_dir) -> dict[str, dict]:
    """{run_id: hyperparameters} straight from each runs file's config_json."""
    out = {}
    for p in (mixed_dir / "runs").glob("*.parquet"):
        row = pq.read_table(p).to_pylist()[0]
        out[row["run_id"]] = json.loads(row["config_json"])["hparams"]
    return out


def test_pyarrow_dataset_duckdb_polars_read_every_column_with_defaults(mixed_dir):
    runs_files = sorted((mixed_dir / "runs").glob("*.parquet"))
    want_runs = list(_fields(runs_files[0]))
    want_evals = list(_fields(next((mixed_dir / "evals").glob("*.parquet"))))
    n_evals = sum(pq.read_metadata(p).num_rows for p in (mixed_dir / "evals").glob("*.parquet"))

    t = ds.dataset(str(mixed_dir / "runs"), format="parquet").to_table()
    assert t.column_names == want_runs and t.num_rows == len(ALGOS)
    e = ds.dataset(str(mixed_dir / "evals"), format="parquet").to_table()
    assert e.column_names == want_evals and e.num_rows == n_evals

    con = duckdb.connect()
    rel = con.sql(f"SELECT * FROM read_parquet('{mixed_dir}/runs/*.parquet')")
    assert rel.columns == want_runs and len(rel.fetchall()) == len(ALGOS)
    rel = con.sql(f"SELECT * FROM read_parquet('{mixed_dir}/evals/*.parquet')")
    assert rel.columns == want_evals and len(rel.fetchall()) == n_evals
    # A per-algorithm column is there for its runs and null for the others.
    got = dict(con.sql(f"SELECT algorithm, hp_threshold FROM read_parquet('{mixed_dir}/runs/*.parquet')").fetchall())
    hp = {r["algorithm"]: r for r in (dict(json.loads(x[0]), algorithm=x[1]) for x in con.sql(
        f"SELECT hparams_json, algorithm FROM read_parquet('{mixed_dir}/runs/*.parquet')").fetchall())}
    for algo, value in got.items():
        assert value == hp[algo].get("threshold"), algo

    lf = pl.scan_parquet(f"{mixed_dir}/runs/*.parquet").collect()
    assert lf.columns == want_runs and lf.height == len(ALGOS)
    le = pl.scan_parquet(f"{mixed_dir}/evals/*.parquet").collect()
    assert le.columns == want_evals and le.height == n_evals

    # hparams_json holds every hyperparameter exactly as the run config has it.
    expected = _expected_hp(mixed_dir)
    for rid, text in zip(lf["run_id"], lf["hparams_json"]):
        assert json.loads(text) == expected[rid]


def test_old_results_dir_loads_with_one_note_and_migrates(tmp_path, capfd):
    # A schema-1 directory as the previous version wrote it: per-run hp_/diag_ columns only.
    root = tmp_path / "old"
    (root / "runs").mkdir(parents=True)
    (root / "evals").mkdir()
    good = train_run(_cfg("meta_semi"), RunEnv(str(tmp_path / "scratch")), write=False)
    row = {k: v for k, v in good.run_row.items()}
    meta = {b"bench.write_token": b"t1", b"bench.schema_version": b"1"}
    pq.write_table(pa.Table.from_pylist([row]).replace_schema_metadata(meta), root / "runs" / f"{row['run_id']}.parquet")
    pq.write_table(pa.Table.from_pylist(good.eval_rows).replace_schema_metadata(meta),
                   root / "evals" / f"{row['run_id']}.parquet")
    other = dict(row, run_id="x" * 16, algorithm="supervised", seed=9)
    other = {k: v for k, v in other.items() if not k.startswith("hp_")}
    pq.write_table(pa.Table.from_pylist([other]).replace_schema_metadata({**meta, b"bench.write_token": b"t2"}),
                   root / "runs" / f"{other['run_id']}.parquet")
    pq.write_table(pa.Table.from_pylist([dict(r, run_id=other["run_id"]) for r in good.eval_rows[:2]]).replace_schema_metadata(
        {**meta, b"bench.write_token": b"t2"}), root / "evals" / f"{other['run_id']}.parquet")

    store = ResultStore(root)
    runs = store.load_runs()
    evals = store.load_evals()
    assert sorted(runs["run_id"]) == sorted([row["run_id"], other["run_id"]])
    ms = runs.set_index("run_id").loc[row["run_id"]]
    assert ms["hp_beta"] == row["hp_beta"] and ms["test_error"] == row["test_error"]
    assert len(evals) == len(good.eval_rows) + 2 and evals["diag_kept_fraction"].notna().any()
    assert store.finished_run_ids() == {row["run_id"], other["run_id"]}
    notes = [l for l in capfd.readouterr().err.splitlines() if "schema" in l]
    assert len(notes) == 2 and all("python -m results.migrate" in n for n in notes)  # once for runs, once for evals

    assert migrate_main([str(root)]) == 0
    assert "rewrote 4 files" in capfd.readouterr().out
    t = ds.dataset(str(root / "runs"), format="parquet").to_table()
    assert t.column_names == list(_fields(next((root / "runs").glob("*.parquet"))))
    by_id = {r["run_id"]: r for r in t.to_pylist()}
    assert by_id[row["run_id"]]["hp_beta"] == row["hp_beta"] and by_id[other["run_id"]]["hp_beta"] is None
    assert json.loads(by_id[row["run_id"]]["hparams_json"])["beta"] == row["hp_beta"]
    pd_after = ResultStore(root).load_evals()
    assert np.allclose(pd_after["error"].to_numpy(), evals["error"].to_numpy())
    assert ResultStore(root).finished_run_ids() == {row["run_id"], other["run_id"]}  # tokens kept: still paired
    assert "schema" not in capfd.readouterr().err  # no note any more


class _StopAt:
    """A reporter that makes the run fail at its second evaluation (after real progress)."""

    def __init__(self):
        self.n = 0

    def report(self, metrics):
        self.n += 1
        if self.n == 2:
            raise RuntimeError("killed at the second evaluation")


def test_failed_rows_have_null_headline_errors(tmp_path):
    out = train_run(_cfg("supervised", steps=40, eval_every=10), RunEnv(str(tmp_path)), reporter=_StopAt())
    assert out.status == "failed" and out.run_row["steps_done"] == 20
    assert any(r["split"] == "test" for r in out.eval_rows)  # there was a partial test error to leak
    assert math.isnan(out.run_row["test_error"]) and math.isnan(out.run_row["val_error"])
    t = pq.read_table(tmp_path / "runs" / f"{out.run_row['run_id']}.parquet")
    assert t.column("test_error").null_count == 1 and t.column("val_error").null_count == 1
    ok = train_run(_cfg("supervised", steps=40, eval_every=10, seed=1), RunEnv(str(tmp_path)))
    avg = duckdb.sql(f"SELECT avg(test_error) FROM read_parquet('{tmp_path}/runs/*.parquet')").fetchall()[0][0]
    assert avg == pytest.approx(ok.run_row["test_error"])  # a naive average sees only the finished run
