"""Tests of results/: schema, atomic Parquet store, summaries.

Expected column types, statistics and file contents are written out here or computed
with numpy / pyarrow directly, not taken from the module under test.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from results import (
    ResultsDirError,
    ResultStore,
    STATUSES,
    format_table,
    last_k_median,
    summarize,
    to_tables,
)

REPO = Path(__file__).resolve().parents[1]

# Written out by hand (independent of results.schema).
RUN_TYPES = {
    "run_id": pa.string(), "suite": pa.string(), "dataset": pa.string(), "n_labels": pa.int64(),
    "split_seed": pa.int64(), "seed": pa.int64(), "split_hash": pa.string(), "algorithm": pa.string(),
    "network": pa.string(), "steps": pa.int64(), "steps_done": pa.int64(), "status": pa.string(),
    "error_message": pa.string(), "test_error": pa.float64(), "val_error": pa.float64(),
    "wall_time_s": pa.float64(), "steps_per_s": pa.float64(), "config_json": pa.string(),
    "python_version": pa.string(), "torch_version": pa.string(), "ray_version": pa.string(),
    "numpy_version": pa.string(), "hostname": pa.string(), "device": pa.string(), "cpu_count": pa.int64(),
    "workers": pa.int64(), "protocol_notes": pa.string(), "finished_at": pa.string(),
}
EVAL_TYPES = {"run_id": pa.string(), "step": pa.int64(), "split": pa.string(), "model": pa.string(),
              "error": pa.float64(), "loss": pa.float64()}


def make_run(run_id: str, *, status: str = "ok", test_error: float = 0.1, dataset: str = "cifar10",
             n_labels: int = 40, algorithm: str = "fixmatch", seed: int = 0, hp: dict | None = None,
             steps_done: int = 100, **over) -> dict:
    row = {
        "run_id": run_id, "suite": "smoke", "dataset": dataset, "n_labels": n_labels, "split_seed": 1,
        "seed": seed, "split_hash": "abc123", "algorithm": algorithm, "network": "wrn28_2", "steps": 100,
        "steps_done": steps_done, "status": status, "error_message": "" if status == "ok" else "boom",
        "test_error": test_error, "val_error": test_error + 0.01, "wall_time_s": 12.5, "steps_per_s": 8.0,
        "config_json": json.dumps({"run_id": run_id, "hp": hp or {}}), "python_version": "3.11.0",
        "torch_version": "2.3.0", "ray_version": "2.60.0", "numpy_version": "1.26.0", "hostname": "host",
        "device": "cpu", "cpu_count": 2, "workers": 1, "protocol_notes": "short budget",
        "finished_at": "2024-01-01T00:00:00+00:00",
    }
    for k, v in (hp or {}).items():
        row[f"hp_{k}"] = v
    row.update(over)
    return row


def make_evals(run_id: str, n: int, diag: dict | None = None, offset: float = 0.0) -> list[dict]:
    rows = []
    for i in range(n):
        for split in ("val", "test"):
            r = {"run_id": run_id, "step": 10 * (i + 1), "split": split, "model": "ema",
                 "error": round((i % 10) / 20 + offset, 6), "loss": float(i) + 0.5}
            for k, v in (diag or {}).items():
                r[f"diag_{k}"] = v
            rows.append(r)
    return rows


# ------------------------------------------------------------------ round trip

HPS = [
    {"lr": 0.03, "threshold": 0.95, "use_ema": True},            # float, float, bool
    {"lr": 0.01, "batch_size": 64, "optimizer": "sgd"},          # float, int, str
    {"meta_lr": 1e-4, "inner_steps": 1},                         # float, int
]
DIAGS = [{"kept_fraction": 0.7}, {"mask_rate": 0.4, "kept_fraction": 0.5}, {}]


def write_three(store: ResultStore) -> tuple[list[dict], list[list[dict]]]:
    runs, evals = [], []
    for i, (hp, dg) in enumerate(zip(HPS, DIAGS)):
        rid = f"run{i}"
        runs.append(make_run(rid, hp=hp, seed=i, test_error=0.1 * (i + 1), algorithm=["fixmatch", "l2i", "metasemi"][i]))
        evals.append(make_evals(rid, 3 + i, diag=dg))
        store.write_run(runs[-1], evals[-1])
    return runs, evals


def test_round_trip_pyarrow_and_loader(tmp_path):
    store = ResultStore(tmp_path / "res")
    runs, evals = write_three(store)

    # Layout and raw Parquet contents, read with pyarrow directly.
    assert sorted(os.listdir(tmp_path / "res" / "runs")) == ["run0.parquet", "run1.parquet", "run2.parquet"]
    assert sorted(os.listdir(tmp_path / "res" / "evals")) == ["run0.parquet", "run1.parquet", "run2.parquet"]
    for run, ev in zip(runs, evals):
        t = pq.read_table(tmp_path / "res" / "runs" / f"{run['run_id']}.parquet")
        assert t.num_rows == 1
        for name, typ in RUN_TYPES.items():
            assert t.schema.field(name).type == typ, name
        row = t.to_pylist()[0]
        hp = {k[3:]: v for k, v in run.items() if k.startswith("hp_")}
        assert {k: row[k] for k in run if not k.startswith("hp_")} == {k: v for k, v in run.items()
                                                                        if not k.startswith("hp_")}
        assert json.loads(row["hparams_json"]) == hp  # every hyperparameter, names no algorithm declares too
        # A hyperparameter of a registered algorithm also has its own typed column (pseudo_label's threshold).
        assert t.schema.field("hp_threshold").type == pa.float64()
        assert row["hp_threshold"] == hp.get("threshold")
        te = pq.read_table(tmp_path / "res" / "evals" / f"{run['run_id']}.parquet")
        for name, typ in EVAL_TYPES.items():
            assert te.schema.field(name).type == typ, name
        for name in te.schema.names:
            if name.startswith("diag_"):
                assert te.schema.field(name).type == pa.float64()
        for got, want in zip(te.to_pylist(), ev):
            assert {k: got[k] for k in EVAL_TYPES} == {k: want[k] for k in EVAL_TYPES}
            assert dict(got["diagnostics"]) == {k[5:]: v for k, v in want.items() if k.startswith("diag_")}
            assert got["diag_kept_fraction"] == want.get("diag_kept_fraction")  # declared by meta_semi
    # Every file of a kind has one schema, whatever the algorithm.
    assert len({pq.read_schema(p).remove_metadata() for p in (tmp_path / "res" / "runs").iterdir()}) == 1
    assert len({pq.read_schema(p).remove_metadata() for p in (tmp_path / "res" / "evals").iterdir()}) == 1

    # Loader: union of columns, values equal, missing hp_/diag_ are NaN/None.
    df = store.load_runs()
    assert len(df) == 3
    assert set(RUN_TYPES) <= set(df.columns)
    hp_cols = {f"hp_{k}" for hp in HPS for k in hp}
    assert hp_cols <= set(df.columns)
    df = df.set_index("run_id")
    for run in runs:
        got = df.loc[run["run_id"]]
        for k in RUN_TYPES:
            if k == "run_id":
                continue
            assert got[k] == run[k], k
        for c in hp_cols:
            if c in run:
                assert got[c] == run[c], c
            else:
                assert pd.isna(got[c]), c
    assert isinstance(df.loc["run0", "hp_use_ema"], (bool, np.bool_))  # bool stays bool, not 1.0
    assert df.loc["run1", "hp_optimizer"] == "sgd"
    for c in ("n_labels", "seed", "steps", "steps_done", "cpu_count", "workers", "split_seed"):
        assert df[c].dtype == np.int64, c
    for c in ("test_error", "val_error", "wall_time_s", "steps_per_s"):
        assert df[c].dtype == np.float64, c

    ev = store.load_evals()
    assert len(ev) == sum(len(e) for e in evals)
    assert {"diag_kept_fraction", "diag_mask_rate"} <= set(ev.columns)
    assert ev["step"].dtype == np.int64 and ev["error"].dtype == np.float64
    for run, expected in zip(runs, evals):
        sub = ev[ev["run_id"] == run["run_id"]].reset_index(drop=True)
        assert len(sub) == len(expected)
        for i, r in enumerate(expected):
            for k in EVAL_TYPES:
                assert sub.loc[i, k] == r[k]
            for k in ("diag_kept_fraction", "diag_mask_rate"):
                if k in r:
                    assert sub.loc[i, k] == r[k]
                else:
                    assert pd.isna(sub.loc[i, k])

    # Selecting run ids.
    assert set(store.load_runs(["run1", "nope"])["run_id"]) == {"run1"}
    assert set(store.load_evals(["run2"])["run_id"]) == {"run2"}


def test_same_hp_with_different_types_across_runs(tmp_path):
    store = ResultStore(tmp_path)
    store.write_run(make_run("a", hp={"x": 3, "lr": 1}), [])
    store.write_run(make_run("b", hp={"x": "three", "lr": 0.5}), [])
    store.write_run(make_run("c", hp={"flag": False}), [])
    # No algorithm declares x: it lives in hparams_json with its type, and is no column of the file.
    assert "hp_x" not in pq.read_schema(tmp_path / "runs" / "a.parquet").names
    assert json.loads(pq.read_table(tmp_path / "runs" / "a.parquet").column("hparams_json")[0].as_py())["x"] == 3
    assert json.loads(pq.read_table(tmp_path / "runs" / "b.parquet").column("hparams_json")[0].as_py())["x"] == "three"
    df = store.load_runs().set_index("run_id")
    assert df.loc["a", "hp_x"] == 3 and df.loc["b", "hp_x"] == "three" and pd.isna(df.loc["c", "hp_x"])
    assert list(df["hp_lr"].iloc[:2]) == [1.0, 0.5]  # int + float -> float
    assert df.loc["c", "hp_flag"] is False or df.loc["c", "hp_flag"] == np.False_


def test_empty_store_and_relative_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = ResultStore("rel/res")
    assert store.root == tmp_path / "rel" / "res"
    df = store.load_runs()
    assert len(df) == 0 and set(RUN_TYPES) <= set(df.columns)
    ev = store.load_evals()
    assert len(ev) == 0 and set(EVAL_TYPES) <= set(ev.columns)
    assert store.finished_run_ids() == set()
    # A run with no eval rows (e.g. failed at start) is stored with an empty evals file.
    store.write_run(make_run("r", status="failed", test_error=float("nan")), [])
    assert list(store.load_runs()["run_id"]) == ["r"]
    assert len(store.load_evals()) == 0


def test_validation_errors():
    good = make_run("x")
    to_tables(good, make_evals("x", 2))
    bad_cases = [
        ({k: v for k, v in good.items() if k != "test_error"}, [], "test_error"),
        ({**good, "n_labels": 40.0}, [], "n_labels"),
        ({**good, "n_labels": True}, [], "n_labels"),
        ({**good, "status": "crashed"}, [], "status"),
        ({**good, "test_error": 12.0}, [], "test_error"),
        ({**good, "run_id": "../evil"}, [], "run_id"),
        ({**good, "hp_obj": object()}, [], "hp_obj"),
        (good, [{"run_id": "x", "step": 1, "split": "training", "model": "ema", "error": 0.1, "loss": 1.0}], "split"),
        (good, [{"run_id": "y", "step": 1, "split": "val", "model": "ema", "error": 0.1, "loss": 1.0}], "run_id"),
        (good, [{"run_id": "x", "step": 1, "split": "val", "model": "ema", "error": 0.1}], "loss"),
        (good, [{"run_id": "x", "step": 1, "split": "val", "model": "ema", "error": 0.1, "loss": 1.0,
                 "diag_k": "high"}], "diag_k"),
    ]
    for run, ev, word in bad_cases:
        with pytest.raises(ValueError) as ei:
            to_tables(run, ev)
        msg = str(ei.value)
        assert word in msg and "\n" not in msg, msg
    assert STATUSES == ("ok", "failed", "diverged")


# ------------------------------------------------------------------ re-write, finished ids

def test_rewrite_replaces_and_finished_ids(tmp_path):
    store = ResultStore(tmp_path)
    store.write_run(make_run("a", status="failed", test_error=float("nan"), steps_done=5), make_evals("a", 1))
    store.write_run(make_run("b", status="ok"), make_evals("b", 2))
    store.write_run(make_run("c", status="diverged", test_error=float("nan")), make_evals("c", 2))
    assert store.finished_run_ids() == {"b", "c"}
    assert store.finished_run_ids(statuses=("failed",)) == {"a"}

    # Re-run the failed run: it overwrites its rows.
    store.write_run(make_run("a", status="ok", test_error=0.2), make_evals("a", 4, offset=0.1))
    store.write_run(make_run("a", status="ok", test_error=0.25), make_evals("a", 3, offset=0.2))
    runs = store.load_runs()
    assert sorted(runs["run_id"]) == ["a", "b", "c"]  # one row per run id
    a = runs[runs["run_id"] == "a"].iloc[0]
    assert a["test_error"] == 0.25 and a["status"] == "ok" and a["error_message"] == ""
    ev = store.load_evals(["a"])
    assert len(ev) == 6 and np.allclose(ev["error"], [e["error"] for e in make_evals("a", 3, offset=0.2)])
    assert store.finished_run_ids() == {"a", "b", "c"}
    assert sorted(os.listdir(tmp_path / "runs")) == ["a.parquet", "b.parquet", "c.parquet"]
    assert sorted(os.listdir(tmp_path / "evals")) == ["a.parquet", "b.parquet", "c.parquet"]


# ------------------------------------------------------------------ interrupted writes

@pytest.mark.parametrize("fail_on_call", [1, 2])  # 1: evals file, 2: runs file
def test_writer_exception_leaves_previous_state(tmp_path, monkeypatch, fail_on_call):
    store = ResultStore(tmp_path)
    store.write_run(make_run("a", test_error=0.3), make_evals("a", 2))
    before_runs = store.load_runs()
    before_evals = store.load_evals()
    before_bytes = {p: p.read_bytes() for p in tmp_path.rglob("*.parquet")}

    real = pq.write_table
    calls = {"n": 0}

    def flaky_write_table(table, where, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] < fail_on_call:
            return real(table, where, *args, **kwargs)
        buf = io.BytesIO()
        real(table, buf, *args, **kwargs)
        data = buf.getvalue()
        where.write(data[: len(data) // 2])  # part of the file, then the "crash"
        where.flush()
        raise RuntimeError("simulated crash in the middle of a parquet write")

    monkeypatch.setattr(pq, "write_table", flaky_write_table)
    # Re-write of an existing run and write of a new run both fail.
    with pytest.raises(RuntimeError, match="simulated crash"):
        store.write_run(make_run("a", test_error=0.9), make_evals("a", 5, offset=0.3))
    calls["n"] = 0
    with pytest.raises(RuntimeError, match="simulated crash"):
        store.write_run(make_run("b"), make_evals("b", 5))
    monkeypatch.setattr(pq, "write_table", real)

    assert {p: p.read_bytes() for p in tmp_path.rglob("*.parquet")} == before_bytes
    assert not [p for p in tmp_path.rglob(".tmp-*")]  # temporaries cleaned up
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pd.testing.assert_frame_equal(store.load_runs(), before_runs)
        pd.testing.assert_frame_equal(store.load_evals(), before_evals)
    assert store.finished_run_ids() == {"a"}


WRITER = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, {repo!r})
    from results import ResultStore
    store = ResultStore({root!r})
    i = 0
    while True:
        rid = "k%05d" % i
        n = 200 + (i % 7) * 50
        run = {run!r}
        run.update(run_id=rid, steps_done=n, seed=i, config_json=json.dumps({{"i": i}}))
        evals = [{{"run_id": rid, "step": s, "split": "test", "model": "ema",
                   "error": ((i * 7919 + s) % 1000) / 1000.0, "loss": float(s),
                   "diag_kept_fraction": (s % 10) / 10.0}} for s in range(n)]
        store.write_run(run, evals)
        i += 1
""")


def test_sigkill_mid_write_leaves_complete_runs(tmp_path):
    root = tmp_path / "res"
    script = tmp_path / "writer.py"
    script.write_text(WRITER.format(repo=str(REPO), root=str(root), run=make_run("template", hp={"lr": 0.1})))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            d = root / "runs"
            if d.is_dir() and len([n for n in os.listdir(d) if not n.startswith(".")]) >= 5:
                break
            if proc.poll() is not None:
                pytest.fail(f"writer exited early: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.05)
        else:
            pytest.fail("writer produced no runs in 30 s")
        time.sleep(0.37)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL

    # Leftovers a crash can leave: a half-written temporary and an evals file without a runs file.
    (root / "runs" / ".tmp-zzz-deadbeef.parquet").write_bytes(b"PAR1 partial garbage")
    (root / "evals" / ".tmp-zzz-deadbeef.parquet").write_bytes(b"PAR1")
    orphan = pa.table({"run_id": ["orphan"], "step": [1], "split": ["test"], "model": ["ema"],
                       "error": [0.5], "loss": [1.0]})
    pq.write_table(orphan, root / "evals" / "orphan.parquet")

    files = sorted(p for p in (root / "runs").iterdir() if not p.name.startswith(".tmp-"))
    assert len(files) >= 5
    n_by_run = {}
    for p in files:  # every runs file present is a complete Parquet file with one row
        t = pq.read_table(p)
        assert t.num_rows == 1 and t.column("run_id")[0].as_py() == p.stem
        n_by_run[p.stem] = t.column("steps_done")[0].as_py()

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warnings: nothing loaded is corrupt
        runs = ResultStore(root).load_runs()
        evals = ResultStore(root).load_evals()
    assert sorted(runs["run_id"]) == sorted(n_by_run)
    assert "orphan" not in set(evals["run_id"]) and "zzz" not in set(runs["run_id"])
    counts = evals.groupby("run_id").size().to_dict()
    assert counts == n_by_run  # every loaded run has all its evals
    for rid, g in evals.groupby("run_id"):
        i = int(rid[1:])
        expected = ((i * 7919 + g["step"].to_numpy()) % 1000) / 1000.0
        assert np.array_equal(g["error"].to_numpy(), expected)


def test_stale_evals_of_interrupted_rewrite_are_dropped(tmp_path, capfd):
    # Simulates a kill between the two renames of a re-write: old runs file, new evals file.
    store = ResultStore(tmp_path)
    store.write_run(make_run("a"), make_evals("a", 2))
    old_runs = (tmp_path / "runs" / "a.parquet").read_bytes()
    store.write_run(make_run("a", test_error=0.5), make_evals("a", 3))
    (tmp_path / "runs" / "a.parquet").write_bytes(old_runs)
    ev = store.load_evals()
    assert len(ev) == 0
    assert list(store.load_runs()["test_error"]) == [0.1]
    assert store.finished_run_ids() == set()  # the run is re-run
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "evals/a.parquet" in err[0] and "not written with the runs file" in err[0]
    assert "re-runs it" in err[0]


def test_corrupt_files_are_skipped_with_one_line_and_re_run(tmp_path, capfd):
    store = ResultStore(tmp_path)
    write_three(store)
    (tmp_path / "runs" / "run1.parquet").write_bytes(b"not a parquet file")
    (tmp_path / "evals" / "run2.parquet").write_bytes(b"PAR1xxxxPAR1")  # beside a good runs file
    runs = store.load_runs()
    assert sorted(runs["run_id"]) == ["run0", "run2"]
    ev = store.load_evals()
    assert set(ev["run_id"]) == {"run0"}  # run1's evals go with its unreadable runs file, run2's are corrupt
    # A corrupt evals file beside a good runs file: the run is not finished, so bench.run re-runs it.
    assert store.finished_run_ids() == {"run0"}
    lines = capfd.readouterr().err.strip().splitlines()
    assert len(lines) == 2, lines  # one line per file, said once
    runs_line = next(l for l in lines if "runs/run1.parquet" in l)
    evals_line = next(l for l in lines if "evals/run2.parquet" in l)
    for line in (runs_line, evals_line):
        assert line.startswith("results: skipping unreadable results file ") and "re-run" in line
    # Re-writing the run (what the re-run does) repairs it.
    store.write_run(make_run("run2", seed=2, test_error=0.3, algorithm="metasemi"), make_evals("run2", 3))
    assert store.finished_run_ids() == {"run0", "run2"}


# ------------------------------------------------------------------ check_writable

def test_check_writable_creates_nothing(tmp_path):
    ok = ResultStore(tmp_path / "new" / "res")
    ok.check_writable()
    assert os.listdir(tmp_path) == []  # probed in the nearest existing folder, nothing left behind
    existing = ResultStore(tmp_path / "res")
    (tmp_path / "res" / "runs").mkdir(parents=True)
    existing.check_writable()
    assert sorted(os.listdir(tmp_path / "res")) == ["runs"] and os.listdir(tmp_path / "res" / "runs") == []

    f = tmp_path / "afile"
    f.write_text("x")
    for target in (f, f / "sub"):
        with pytest.raises(ResultsDirError) as ei:
            ResultStore(target).check_writable()
        msg = str(ei.value)
        assert msg.startswith(f"results directory {target} is not writable") and "\n" not in msg
        assert "not a directory" in msg


RO_CHECK = """
import sys
sys.path.insert(0, {repo!r})
from results import ResultStore, ResultsDirError
print("START", flush=True)
for p in ({ro!r}, {ro!r} + "/sub"):
    try:
        ResultStore(p).check_writable()
    except ResultsDirError as e:
        assert "is not writable" in str(e) and "Permission denied" in str(e), str(e)
    else:
        sys.exit("no ResultsDirError for " + p)
print("OK")
"""


def test_check_writable_read_only_dir(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o555)
    try:
        if not os.access(ro, os.W_OK):
            with pytest.raises(ResultsDirError, match="is not writable"):
                ResultStore(ro).check_writable()
            with pytest.raises(ResultsDirError, match="is not writable"):
                ResultStore(ro / "sub").check_writable()
            return
    finally:
        os.chmod(ro, 0o755)
    # Running as root: chmod does not restrict us. Try again as an unprivileged user.
    setpriv = shutil.which("setpriv")
    if setpriv is None or os.geteuid() != 0:
        pytest.skip("chmod does not restrict this user and setpriv is unavailable")
    base = Path(tempfile.mkdtemp(prefix="ro-check-"))
    try:
        os.chmod(base, 0o755)
        ro = base / "ro"
        ro.mkdir(mode=0o555)
        os.chmod(ro, 0o555)
        r = subprocess.run([setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c",
                            RO_CHECK.format(repo=str(REPO), ro=str(ro))], capture_output=True, text=True, timeout=60)
        if "START" not in r.stdout:  # setpriv refused, or the unprivileged user cannot import the repo
            pytest.skip(f"cannot run as an unprivileged user here: {r.stderr.strip()[-300:]}")
        assert r.returncode == 0 and r.stdout.split() == ["START", "OK"], r.stderr
    finally:
        shutil.rmtree(base, ignore_errors=True)


# ------------------------------------------------------------------ summaries

def test_summarize_and_format_table():
    rng = np.random.default_rng(0)
    rows = []
    expected = {}
    for ds, nl, algo, n_ok, n_fail, n_div in [("cifar10", 40, "fixmatch", 3, 1, 0),
                                              ("cifar10", 40, "l2i", 1, 0, 1),
                                              ("cifar10", 250, "fixmatch", 4, 0, 0),
                                              ("svhn", 40, "metasemi", 0, 2, 0)]:
        te = rng.uniform(0.05, 0.5, n_ok)
        ve = rng.uniform(0.05, 0.5, n_ok)
        sps = rng.uniform(1, 20, n_ok)
        wall = rng.uniform(10, 100, n_ok)
        for j in range(n_ok):
            rows.append(dict(dataset=ds, n_labels=nl, algorithm=algo, status="ok", test_error=te[j],
                             val_error=ve[j], steps_per_s=sps[j], wall_time_s=wall[j], network="cnn_small", steps=100))
        for st, n in (("failed", n_fail), ("diverged", n_div)):
            for _ in range(n):  # extreme values that must not leak into the means
                rows.append(dict(dataset=ds, n_labels=nl, algorithm=algo, status=st, test_error=0.99,
                                 val_error=0.99, steps_per_s=1e6, wall_time_s=1e6, network="cnn_small", steps=100))
        expected[(ds, nl, algo)] = dict(
            n_runs=n_ok, n_failed=n_fail, n_diverged=n_div,
            test_error_mean=np.mean(te) if n_ok else np.nan,
            test_error_std=np.std(te, ddof=1) if n_ok > 1 else np.nan,
            val_error_mean=np.mean(ve) if n_ok else np.nan,
            steps_per_s_mean=np.mean(sps) if n_ok else np.nan,
            wall_time_s_mean=np.mean(wall) if n_ok else np.nan)
    runs = pd.DataFrame(rows).sample(frac=1.0, random_state=1)  # order must not matter

    s = summarize(runs)
    assert len(s) == 4
    assert list(zip(s["dataset"], s["n_labels"], s["algorithm"])) == sorted(expected)
    for r in s.itertuples(index=False):
        e = expected[(r.dataset, r.n_labels, r.algorithm)]
        for k, v in e.items():
            got = getattr(r, k)
            if isinstance(v, float) and math.isnan(v):
                assert math.isnan(got), k
            else:
                assert got == pytest.approx(v, rel=1e-12), k

    text = format_table(s)
    lines = text.splitlines()
    assert len(lines) == 2 + 4  # header, rule, one line per group
    body = lines[2:]
    assert [l.split()[:5] for l in body] == [[d, str(n), "cnn_small", "100", a] for d, n, a in sorted(expected)]
    e = expected[("cifar10", 40, "fixmatch")]
    assert f"{e['test_error_mean'] * 100:.2f} ± {e['test_error_std'] * 100:.2f} (3)" in body[0]
    assert body[0].rstrip().endswith("1/0")
    assert body[3].rstrip().endswith("2/0") and "(0)" in body[3]
    assert len({len(l) for l in lines[:2]}) == 1  # fixed width header/rule

    empty = summarize(runs.iloc[0:0])
    assert len(empty) == 0 and "test_error_mean" in empty.columns
    assert "(no runs)" in format_table(empty)


def test_last_k_median():
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 1, 57)
    assert last_k_median(x) == np.median(x[-20:])
    assert last_k_median(list(x), k=7) == np.median(x[-7:])
    assert last_k_median(x[:5], k=20) == np.median(x[:5])
    assert last_k_median([0.3, 0.1]) == pytest.approx(0.2)
    assert math.isnan(last_k_median([]))
    with pytest.raises(ValueError):
        last_k_median(x, k=0)
