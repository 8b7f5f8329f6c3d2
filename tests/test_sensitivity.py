"""python -m bench.sensitivity: grid expansion, bad input, runs + study table + figure from Parquet."""
from __future__ import annotations

import glob
import json
import os
import statistics

import pyarrow.parquet as pq
import pytest

from bench import sensitivity as bs


def _plan(argv, tmp_path):
    return bs.plan(bs.build_parser().parse_args(argv + ["--results-dir", str(tmp_path)]))


def test_grid_is_values_x_seeds_per_method_with_one_or_two_axes(tmp_path):
    argv = ["--algorithms", "meta_semi,ict", "--param", "beta,alpha", "--values", "0.1,0.5,1.0",
            "--seeds", "2", "--dataset", "two_circles", "--steps", "20"]
    configs, _, row = _plan(argv, tmp_path)
    assert len(configs) == 2 * 3 * 2  # methods x values x seeds
    ms = sorted((c.hparams["beta"], c.seed) for c in configs if c.algorithm == "meta_semi")
    assert ms == [(v, s) for v in (0.1, 0.5, 1.0) for s in (0, 1)]
    ict = {c.hparams["alpha"] for c in configs if c.algorithm == "ict"}
    assert ict == {0.1, 0.5, 1.0}
    assert len({c.run_id for c in configs}) == len(configs)
    assert {c.suite for c in configs} == {f"sensitivity:{row['study_id']}"}
    assert json.loads(row["params_json"]) == {"meta_semi": ["beta"], "ict": ["alpha"]}
    # Everything not varied stays at the recipe: the ICT runs differ only in alpha and seed.
    ict_hp = [{k: v for k, v in c.hparams.items() if k != "alpha"} for c in configs if c.algorithm == "ict"]
    assert all(h == ict_hp[0] for h in ict_hp)

    two_d, _, row2 = _plan(["--algorithms", "ict", "--param", "alpha", "--values", "0.1,1", "--param", "lambda_u",
                            "--values", "1,10,100", "--seeds", "1", "--dataset", "two_circles"], tmp_path)
    assert sorted((c.hparams["alpha"], c.hparams["lambda_u"]) for c in two_d) == \
        [(a, w) for a in (0.1, 1.0) for w in (1.0, 10.0, 100.0)]
    assert row2["study_id"] != row["study_id"]


@pytest.mark.parametrize("argv,needle", [
    (["--param", "gamma", "--values", "0.1"], "no searchable hyperparameter 'gamma'"),
    (["--param", "beta", "--values", "0.1,2"], "outside its range [0.1, 1]"),
    (["--param", "beta", "--values", "0.1", "--param", "beta", "--values", "0.2"], "both --param"),
    (["--param", "beta", "--values", "0.1", "--values", "0.2"], "one --values per --param"),
    (["--param", "beta", "--values", "0.1,x"], "invalid list"),
    (["--param", "beta", "--values", "0.1", "--seeds", "0"], "--seeds must be positive"),
    (["--algorithms", "meta_semi,ict", "--param", "beta", "--values", "0.5"], "ict has no searchable hyperparameter 'beta'"),
])
def test_bad_input_is_one_line_and_exit_2(argv, needle, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        bs.main(argv + ["--results-dir", str(tmp_path)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err


@pytest.mark.ray
@pytest.mark.timeout(300)
def test_study_writes_runs_study_row_and_figure(tmp_path, capsys):
    results = tmp_path / "results"
    argv = ["--param", "beta", "--values", "0.2,1.0", "--seeds", "2", "--dataset", "two_circles", "--steps", "20",
            "--num-cpus", "2", "--results-dir", str(results), "--plot"]
    assert bs.main(argv) == 0
    out = capsys.readouterr().out
    (study_file,) = glob.glob(str(results / "studies" / "*.parquet"))
    study = pq.read_table(study_file).to_pylist()[0]
    # Independent read of the runs files: mean test error per beta over the two seeds.
    runs = [pq.read_table(f).to_pylist()[0] for f in glob.glob(str(results / "runs" / "*.parquet"))]
    assert len(runs) == 4 and all(r["suite"] == study["suite"] and r["status"] == "ok" for r in runs)
    by_beta = {b: [r["test_error"] for r in runs if r["hp_beta"] == b] for b in (0.2, 1.0)}
    assert all(len(v) == 2 for v in by_beta.values())

    from results.plots import sensitivity_table

    table = sensitivity_table(str(results), study["study_id"])
    assert list(table["value"]) == [0.2, 1.0] and list(table["n"]) == [2, 2]
    for r in table.itertuples():
        assert r.test_error_mean == pytest.approx(statistics.mean(by_beta[r.value]))
        assert r.test_error_std == pytest.approx(statistics.stdev(by_beta[r.value]))
    for ext in ("png", "pdf"):
        path = results / "figures" / f"sensitivity-{study['study_id']}.{ext}"
        assert path.stat().st_size > 1000 and f"figure: {path}" in out

    # The plot CLI redraws from the Parquet files alone (no Ray), elsewhere.
    from results.plots import main as plot_main

    assert plot_main(["--results-dir", str(results), "--out", str(tmp_path / "fig")]) == 0
    assert os.path.getsize(tmp_path / "fig.png") > 1000 and os.path.getsize(tmp_path / "fig.pdf") > 1000
    # A second run of the same study trains nothing.
    assert bs.main(argv) == 0
    assert "4 already finished, 0 to run" in capsys.readouterr().out
