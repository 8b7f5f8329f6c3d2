"""Paired comparisons, equal-time errors and the report, on synthetic rows written in the real
Parquet format, checked against hand and scipy computations."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy import stats as sps

from results import ResultStore
from results.compare import comparisons, equal_time_pairs, error_at_time, curve, paired_values, with_settings
from results.report import build_report, main
from results.report_load import load_results

SHARED_CSV = "/work/shared/paper_numbers.csv"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# final test errors by (algorithm, seed), fractions
TEST = {"supervised": [0.30, 0.32, 0.31, 0.33], "pseudo_label": [0.25, 0.27, 0.24, 0.26],
        "pseudo_label+l2i_o": [0.22, 0.26, 0.20, 0.21]}
SEC_PER_STEP = {"supervised": 0.05, "pseudo_label": 0.1, "pseudo_label+l2i_o": 0.3}
STATUS = {("pseudo_label", 3): "failed", ("supervised", 1): "diverged"}  # and l2i_o seed 2 is never written
STEPS, EVERY = 100, 10


def curve_errors(algo: str, seed: int) -> list[float]:
    """Ten EMA test errors falling to the final number (last one = TEST)."""
    final = TEST[algo][seed]
    return [round(final + 0.02 * (9 - i) + 0.001 * seed, 6) for i in range(10)]


def run_row(algo: str, seed: int, status: str, **over) -> dict:
    errs = curve_errors(algo, seed)
    row = {"run_id": f"{algo.replace('+', '-')}-{seed}", "suite": "t", "dataset": "digits", "n_labels": 50,
           "split_seed": seed, "seed": seed, "split_hash": f"h{seed}", "algorithm": algo, "network": "cnn_small",
           "steps": STEPS, "steps_done": STEPS, "status": status, "error_message": "" if status == "ok" else "boom",
           # the run's number is the median of its last 20 evaluations: all ten here
           "test_error": float(np.median(errs)) if status == "ok" else float("nan"),
           "val_error": float(np.median(errs)) + 0.01 if status == "ok" else float("nan"),
           "wall_time_s": 1.0, "steps_per_s": 1 / SEC_PER_STEP[algo], "config_json": json.dumps({"eval_last_k": 20}),
           "python_version": "3", "torch_version": "2", "ray_version": "2", "numpy_version": "1", "hostname": "h",
           "device": "cpu", "cpu_count": 2, "workers": 1, "protocol_notes": "synthetic", "finished_at": "2025-01-01",
           "batch_labeled": 16, "batch_unlabeled": 48, "optimizer": "sgd", "lr": 0.05, "val_protocol": "scarce",
           "ema_decay": 0.99, "n_val": 50}
    row.update(over)
    return row


def eval_rows(algo: str, seed: int) -> list[dict]:
    rows = []
    for i, e in enumerate(curve_errors(algo, seed)):
        step = EVERY * (i + 1)
        for split, err in (("test", e), ("val", e + 0.01), ("train", e / 2)):
            for model in ("ema", "raw"):
                rows.append({"step": step, "split": split, "model": model, "error": err, "loss": 1.0,
                             "elapsed_s": step * SEC_PER_STEP[algo]})
    return rows


@pytest.fixture
def results_dir(tmp_path):
    store = ResultStore(tmp_path / "res")
    for algo in TEST:
        for seed in range(4):
            if (algo, seed) == ("pseudo_label+l2i_o", 2):
                continue  # missing
            status = STATUS.get((algo, seed), "ok")
            store.write_run(run_row(algo, seed, status), eval_rows(algo, seed) if status == "ok" else [])
    (store.runs_dir / "corrupt.parquet").write_bytes(b"PAR1 this is not parquet")
    pq.write_table(pa.table({"x": [1, 2]}), store.runs_dir / "foreign.parquet")
    return str(tmp_path / "res")


def _errs(algo, seeds):
    return np.array([float(np.median(curve_errors(algo, s))) for s in seeds])


def test_loader_names_corrupt_and_foreign_files_and_keeps_the_rest(results_dir):
    loaded = load_results(results_dir)
    assert len(loaded.runs) == 11
    assert len(loaded.problems) == 2
    assert any("corrupt.parquet" in p for p in loaded.problems)
    assert any("foreign.parquet" in p and "not a results file" in p for p in loaded.problems)
    assert all("\n" not in p for p in loaded.problems)


def test_paired_differences_and_intervals_by_hand_and_scipy(results_dir):
    runs = with_settings(load_results(results_dir).runs)
    setting = runs["setting"].iloc[0]
    pv = paired_values(runs, setting, "pseudo_label+l2i_o", "pseudo_label", "test_error")
    # seed 2: no rule run; seed 3: the base failed -> seeds 0 and 1 pair
    assert list(pv["seed"]) == [0, 1]
    expected = _errs("pseudo_label+l2i_o", [0, 1]) - _errs("pseudo_label", [0, 1])
    assert list(pv["diff"]) == pytest.approx(expected)
    cmp = comparisons(runs, "test_error")
    row = cmp[(cmp["method"] == "pseudo_label") & (cmp["reference"] == "supervised")].iloc[0]
    seeds = [0, 2]  # supervised seed 1 diverged, pseudo_label seed 3 failed
    d = _errs("pseudo_label", seeds) - _errs("supervised", seeds)
    assert row["n"] == 2 and row["mean"] == pytest.approx(d.mean())
    assert (row["t_low"], row["t_high"]) == pytest.approx(sps.t.interval(0.95, 1, loc=d.mean(), scale=sps.sem(d)))
    assert "seed 3 failed" in row["missing"] and "seed 1 diverged" in row["missing"]
    rule = cmp[(cmp["method"] == "pseudo_label+l2i_o") & (cmp["kind"] == "vs supervised")].iloc[0]
    d = _errs("pseudo_label+l2i_o", [0, 3]) - _errs("supervised", [0, 3])
    assert rule["n"] == 2 and rule["mean"] == pytest.approx(d.mean()) and "seed(s) 2" in rule["missing"]
    assert set(cmp["kind"]) == {"rule vs base", "vs supervised"}


def test_equal_time_reads_each_run_at_the_shorter_training_time(results_dir):
    loaded = load_results(results_dir)
    runs = with_settings(loaded.runs)
    setting = runs["setting"].iloc[0]
    et = equal_time_pairs(runs, loaded.evals, setting, "pseudo_label+l2i_o", "pseudo_label")
    assert list(et["seed"]) == [0, 1]
    for r in et.itertuples(index=False):
        # the rule's 100 steps take 30 s, the base's 10 s: both read at t = 10 s
        assert (r.t_a, r.t_b, r.t) == pytest.approx((30.0, 10.0, 10.0))
        rule_curve = curve_errors("pseudo_label+l2i_o", r.seed)
        # by 10 s the rule had evaluated at steps 10, 20, 30 (3, 6, 9 s): median of those three
        assert r.a == pytest.approx(float(np.median(rule_curve[:3])))
        assert r.b == pytest.approx(float(np.median(curve_errors("pseudo_label", r.seed))))  # the base's own end
        assert not r.estimated
    # a curve read before its first evaluation has no number; at its end it gives the run's final number
    c = curve(loaded.evals[loaded.evals["run_id"] == "pseudo_label-0"], 10.0)
    assert math.isnan(error_at_time(c, 0.5)) and error_at_time(c, 1e9) == pytest.approx(TEST["pseudo_label"][0] + 0.09)
    timed = comparisons(runs, "equal_time:test", evals=loaded.evals)
    row = timed[(timed["method"] == "pseudo_label+l2i_o") & (timed["reference"] == "pseudo_label")].iloc[0]
    assert row["mean"] == pytest.approx(float((et["a"] - et["b"]).mean())) and row["t_mean"] == pytest.approx(10.0)


def test_elapsed_time_is_estimated_from_steps_per_second_for_older_rows():
    e = pd.DataFrame({"run_id": "r", "step": [10, 20], "split": "test", "model": "ema", "error": [0.5, 0.4]})
    c = curve(e, steps_per_s=5.0)
    assert list(c["elapsed_s"]) == [2.0, 4.0] and c["estimated"].all()


def test_report_on_failed_missing_and_corrupt_entries(results_dir, tmp_path, capsys):
    out = tmp_path / "rep"
    assert main(["--results-dir", results_dir, "--out", str(out)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    # one line for each bad file (the store names the corrupt one itself, and notes the odd column set once)
    assert sum("corrupt.parquet" in line for line in err) == 1 and sum("foreign.parquet" in line for line in err) == 1
    assert all(line.startswith(("results: ", "results.report: warning: ")) for line in err) and len(err) <= 3
    md = (out / "report.md").read_text()
    for needle in ("## Settings", "## What is missing", "## Results per setting", "## Paired comparisons", "## Cost",
                   "## Against the papers", "pseudo_label seed 3 failed: boom", "supervised seed 1 diverged",
                   "pseudo_label+l2i_o has no run for seed(s) 2", "corrupt.parquet", "synthetic",
                   "**digits**: the papers report no numbers"):
        assert needle in md, needle
    pngs = sorted(p.name for p in out.iterdir() if p.suffix == ".png")
    assert len(pngs) == 2 and all(f"]({p})" in md for p in pngs)
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2 and "<table>" in html
    # the results table shows each method's mean +- std over its ok runs, in percent
    pl = _errs("pseudo_label", [0, 1, 2])
    assert f"| pseudo_label | 3 (+1 not ok) | {100 * pl.mean():.2f} ± {100 * pl.std(ddof=1):.2f} |" in md


def test_report_cli_errors(tmp_path):
    r = subprocess.run([sys.executable, "-m", "results.report", "--results-dir", str(tmp_path / "none"), "--out",
                        str(tmp_path / "o")], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "does not exist" in r.stderr
    assert not (tmp_path / "o").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no readable runs"):
        build_report(str(tmp_path / "empty"), str(tmp_path / "o2"))


def test_against_the_papers_lines_up_a_smoke_run_with_its_paper_row(tmp_path):
    from results.papers import load_paper_numbers
    from results.report_papers import against_papers

    store = ResultStore(tmp_path / "res")
    for seed, err in enumerate((0.60, 0.64)):
        row = run_row("supervised", seed, "ok", run_id=f"c{seed}", dataset="cifar10", n_labels=250, steps=20,
                      test_error=err, protocol_notes="budget overridden to 20 steps")
        store.write_run(row, [])
    runs = with_settings(load_results(str(tmp_path / "res")).runs)
    matched, not_run = against_papers(runs, load_paper_numbers())
    hit = matched[(matched["paper"] == "000") & (matched["table"] == "Table 1")]
    assert len(hit) == 1
    h = hit.iloc[0]
    assert (h["paper_method"], h["paper_value"], h["n"]) == ("SL", 57.95, 2)
    assert h["mean"] == pytest.approx(62.0) and h["diff"] == pytest.approx(62.0 - 57.95)
    assert "network cnn_small instead of cnn13" in h["deviations"] and "budget overridden to 20 steps" in h["deviations"]
    assert "validation scarce" in h["deviations"]
    # 002 Table 1's supervised row at 1000 labels was not run (we ran 250 only)
    assert ((not_run["paper"] == "002") & (not_run["method"] == "Supervised")).any()
    assert len(matched) + len(not_run) >= len(load_paper_numbers())


def test_against_the_papers_lines_up_landmark_runs_by_their_metric(tmp_path):
    """AFLW runs (NME over the inter-ocular distance, stored as a fraction) line up with 001 Table 1's
    nme_pct rows in percent; the same numbers stored as a classification error line up with nothing."""
    from results.papers import load_paper_numbers
    from results.report_papers import against_papers

    for metric, expect in (("nme_iod", 1), ("error", 0)):
        store = ResultStore(tmp_path / metric)
        for seed, err in enumerate((0.1602, 0.1662)):
            row = run_row("supervised", seed, "ok", run_id=f"{metric}{seed}", dataset="aflw", network="tcdcn",
                          n_labels=91, steps=20, test_error=err, metric=metric)
            store.write_run(row, [])
        runs = with_settings(load_results(str(tmp_path / metric)).runs)
        matched, not_run = against_papers(runs, load_paper_numbers())
        hit = matched[(matched["paper"] == "001") & (matched["table"] == "Table 1")]
        assert len(hit) == expect, metric
        if expect:
            h = hit.iloc[0]
            assert (h["paper_method"], h["paper_value"], h["n"]) == ("SL", 16.32, 2)
            assert h["mean"] == pytest.approx(16.32) and h["diff"] == pytest.approx(0.0, abs=1e-9)
            assert ((not_run["paper"] == "001") & (not_run["table"] == "Table 1") & (not_run["method"] == "MT")
                    & (not_run["n_labels"] == 91) & not_run["reason"].str.startswith("method not run")).any()


def test_paper_numbers_copy_matches_the_shared_transcription_row_for_row():
    if not os.path.exists(SHARED_CSV):
        pytest.skip("the shared transcription is not on this machine")
    ours = pd.read_csv(os.path.join(REPO, "results", "paper_numbers.csv"), dtype=str, keep_default_na=False)
    theirs = pd.read_csv(SHARED_CSV, dtype=str, keep_default_na=False)
    assert list(ours.columns) == list(theirs.columns)
    assert ours.values.tolist() == theirs.values.tolist()


def test_declared_method_table_names_real_methods_and_real_paper_rows():
    from algorithms import list_algorithms, list_compositions
    from results.papers import PAPER_METHODS, load_paper_numbers

    papers = load_paper_numbers()
    names = set(zip(papers["paper"], papers["method"]))
    ours = set(list_algorithms()) | set(list_compositions())
    import dataclasses

    from algorithms import get_algorithm

    for m in PAPER_METHODS:
        assert (m.paper, m.method) in names, m
        assert m.algorithm in ours, m
        fields = {f.name for f in dataclasses.fields(get_algorithm(m.algorithm).Hparams)}
        assert {c[0] for c in m.conditions} <= fields, m  # conditions name real hyperparameters


def test_bench_run_final_table_shows_budget_n_and_the_paired_delta(results_dir):
    from results import final_tables

    text = final_tables(load_results(results_dir).runs)
    line = next(l for l in text.splitlines() if " pseudo_label+l2i_o " in l and "digits" in l.split()[0])
    d = _errs("pseudo_label+l2i_o", [0, 1]) - _errs("pseudo_label", [0, 1])
    lo, hi = sps.t.interval(0.95, 1, loc=d.mean(), scale=sps.sem(d))
    assert line.split()[:5] == ["digits", "50", "cnn_small", "100", "pseudo_label+l2i_o"]
    assert f"{100 * d.mean():+.2f} [{100 * lo:+.2f}, {100 * hi:+.2f}]" in line and "pseudo_label (2)" in line
    assert "(3)" in line  # n: three ok runs of the rule
    assert "Paired comparisons" in text and "rule vs base" in text
