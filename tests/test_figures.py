"""python -m bench.figure and the figure registry: listing, bad names, studies at both scales,
every plot drawn from synthetic Parquet rows (no training), missing runs named."""
from __future__ import annotations

import dataclasses
import os

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bench import figure as bf
from bench.cli_errors import UsageError
from bench.config import RunConfig
from bench.figure_plan import plan_figure, share_artifacts
from bench.planner import PlanRequest, make_plan
from results.figures import FIGURES, SCALES, StudyPart
from results.figures.base import Figure, Study
from tests.figure_fixtures import eval_rows, write_synthetic

RUNNABLE = [n for n, f in FIGURES.items() if not f.needs]
PENDING = [n for n, f in FIGURES.items() if f.needs]
DRY = dict(results_dir="unused", data_root=None, download=False, workers=1, gpus_per_worker=0.0, dry_run=True)


def _plan(name: str, scale: str):
    return plan_figure(FIGURES[name], scale, DRY)


def test_list_names_every_figure_with_its_paper_number_and_scales(capsys):
    assert bf.main(["--list"]) == 0
    out = capsys.readouterr().out
    for name in ("000-fig1", "000-fig5", "001-fig2", "001-fig3", "002-fig2", "002-fig3", "002-table5", "003-fig1",
                 "003-fig2", "003-fig3"):
        assert name in FIGURES
        f = FIGURES[name]
        line = next(line for line in out.splitlines() if line.startswith(name))
        assert f.number in line and f.paper in line
        assert ("scales: cpu, paper" in line) == (not f.needs)
    assert PENDING == []


@pytest.mark.parametrize("argv,needle", [
    (["no-such-figure"], "unknown figure 'no-such-figure'"),
    ([], "name a figure, or all"),
    (["all", "000-fig1"], "give it alone"),
    (["000-fig1", "--scale", "gpu"], "invalid choice"),
    (["000-fig1", "--workers", "0"], "--workers must be at least 1"),
])
def test_bad_input_is_one_line_and_exit_2(argv, needle, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        bf.main(argv + ["--results-dir", str(tmp_path / "r")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err
    assert not (tmp_path / "r").exists()  # nothing written


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("name", RUNNABLE)
def test_every_study_expands_to_valid_configs_at_both_scales(name, scale):
    """The paper scale plans without any dataset file (dry run); every config survives a round
    trip through the typed config, names a registered artifact, and is planned once."""
    plan = _plan(name, scale)
    assert plan.configs
    ids = [c.run_id for c in plan.configs]
    assert len(ids) == len(set(ids))
    for c in plan.configs:
        again = RunConfig.from_dict(c.to_dict())
        assert again == c and again.run_id == c.run_id
        # a run the figure changed is never recorded under a suite's name
        assert (plan.changes[c.run_id] != "") == (c.suite == FIGURES[name].suite)
    if scale == "paper":
        offline = {"two_circles", "digits"}
        assert name == "000-fig1" or not {c.dataset for c in plan.configs} & offline


def test_unchanged_runs_are_the_suites_runs_and_changed_ones_say_what_changed():
    quick = {c.run_id for c in make_plan(PlanRequest(suite="quick", dry_run=True)).configs}
    standard = {c.run_id for c in make_plan(PlanRequest(suite="standard", dry_run=True)).configs}
    fig1 = _plan("000-fig1", "cpu")
    assert {c.run_id for c in fig1.configs} <= quick  # the default suite's two-circles runs: shared
    fig2 = _plan("003-fig2", "cpu")
    by_n = {n: {c.run_id for c in fig2.configs if c.n_labels == n} for n in (20, 50, 100, 200)}
    assert by_n[50] <= quick and by_n[100] <= standard and not (by_n[20] | by_n[200]) & (quick | standard)
    for c in fig2.configs:
        if c.n_labels in (20, 200):
            assert c.suite == "figure:003-fig2" and f"figure 003-fig2: {c.n_labels} labels" in c.protocol_notes
    fig5 = _plan("000-fig5", "cpu")
    at_default = [c for c in fig5.configs if c.hparams.get("holdout_batch") == 32]
    assert at_default and all(c.run_id in quick for c in at_default)
    assert all(c.suite == "figure:000-fig5" for c in fig5.configs if c.hparams.get("holdout_batch") in (8, 16))
    # the labeled-only baseline of the paper scale trains in the method's settings
    p1 = _plan("003-fig1", "paper")
    sl = [c for c in p1.configs if c.algorithm == "supervised"]
    mg = [c for c in p1.configs if c.algorithm == "pseudo_label+meta_grad"]
    assert sl and mg
    for field in ("network", "steps", "optim", "batch_labeled", "n_labels", "dataset"):
        assert {getattr(c, field) for c in sl} == {getattr(c, field) for c in mg}


def test_artifacts_are_asked_of_seed_0_and_merged_where_figures_share_a_run():
    plans = [_plan(n, "cpu") for n in ("003-fig1", "003-fig3")]
    assert {c.run_id for c in plans[0].configs} == {c.run_id for c in plans[1].configs}
    share_artifacts(plans)
    for p in plans:
        for c in p.configs:
            assert c.artifacts == (("features",) if c.seed == 0 else ())
    base = make_plan(PlanRequest(suite="quick", algorithms=("supervised",), datasets=("digits",), seeds=1,
                                 dry_run=True)).configs[0]
    assert dataclasses.replace(base, artifacts=("features",)).run_id == base.run_id  # never part of the identity


def test_figure_changes_are_checked_before_anything_runs():
    fig = Figure("t-bad", "test", "Fig. 0", "t", "t", studies={"cpu": lambda: Study(
        (StudyPart(dict(suite="quick", datasets=("digits",), seeds=1, algorithms=("supervised",)), n_labels=(55,)),),
        "none")})
    with pytest.raises(UsageError, match="multiple of"):
        plan_figure(fig, "cpu", DRY)
    fig = dataclasses.replace(fig, studies={"cpu": lambda: Study(
        (StudyPart(dict(suite="quick", datasets=("digits",), seeds=1, algorithms=("supervised",)), hp={"nope": 1}),),
        "none")})
    with pytest.raises(UsageError, match="nope"):
        plan_figure(fig, "cpu", DRY)
    fig = dataclasses.replace(fig, studies={"cpu": lambda: Study((StudyPart(dict(suit="quick")),), "none")})
    with pytest.raises(UsageError, match="bad study part"):
        plan_figure(fig, "cpu", DRY)


def _png_text(path: str) -> dict:
    with Image.open(path) as im:
        return dict(im.text)


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("name", RUNNABLE)
def test_every_plot_draws_from_synthetic_parquet_rows(name, scale, tmp_path, capsys):
    res = str(tmp_path / "res")
    plan = _plan(name, scale)
    write_synthetic(res, plan.configs)
    assert bf.main([name, "--plot-only", "--scale", scale, "--results-dir", res]) == 0
    stem = os.path.join(res, "figures", name)
    for ext in ("png", "pdf", "md"):
        assert os.path.getsize(f"{stem}.{ext}") > 500
    assert os.path.getsize(f"{stem}.png") < 200_000
    text = _png_text(f"{stem}.png")
    caption = text["Description"]
    assert f"{FIGURES[name].number}" in text["Title"]
    assert "Deviations from the paper:" in caption and f"{len(plan.configs)} of {len(plan.configs)} runs ok" in caption
    assert caption in open(f"{stem}.md").read()
    assert "drawn:" in capsys.readouterr().out


def test_sweep_and_budget_tables_match_an_independent_computation(tmp_path):
    res = str(tmp_path / "res")
    p3 = _plan("002-fig3", "cpu")
    p5 = _plan("002-table5", "cpu")
    write_synthetic(res, p3.configs + [c for c in p5.configs if c.run_id not in {x.run_id for x in p3.configs}])
    assert bf.main(["002-fig3", "002-table5", "--plot-only", "--results-dir", res]) == 0
    sweep = pd.read_csv(os.path.join(res, "figures", "002-fig3-sweep.csv"))
    for r in sweep.itertuples():
        runs = [c for c in p3.configs if c.algorithm == r.algorithm and c.hparams[r.param] == r.value
                and (not isinstance(r.param2, str) or c.hparams[r.param2] == r.value2)]
        errs = [float(np.median([e["error"] for e in eval_rows(c) if e["split"] == "test"])) for c in runs]
        assert r.n == len(runs) == 3
        assert r.test_error_pct == pytest.approx(round(100 * np.mean(errs), 2))
        assert r.std_pct == pytest.approx(round(100 * np.std(errs, ddof=1), 2))
    table = pd.read_csv(os.path.join(res, "figures", "002-table5-error_at_budget.csv"))
    # T = the shorter mean training time of the pair; a run's error at t: median of its test errors by t
    method = "meta_semi"
    for ref in ("ict", "mixmatch"):
        ends = {a: np.mean([max(e["elapsed_s"] for e in eval_rows(c)) for c in p5.configs if c.algorithm == a])
                for a in (ref, method)}
        t = 0.4 * min(ends.values())
        errs = []
        for c in (c for c in p5.configs if c.algorithm == method):
            by_t = [e["error"] for e in eval_rows(c) if e["split"] == "test" and e["elapsed_s"] <= t * (1 + 1e-9)]
            if by_t:
                errs.append(float(np.median(by_t[-20:])))
        cell = table[table["algorithm"] == "Meta-Semi"]["40% of T"].tolist()
        want = f"{100 * np.mean(errs):.1f}" + (f" ± {100 * np.std(errs, ddof=1):.1f}" if len(errs) > 1 else "")
        assert any(c.startswith(want) for c in cell), (want, cell)


def test_plot_only_without_results_names_the_missing_runs(tmp_path, capsys):
    res = str(tmp_path / "empty")
    assert bf.main(["003-fig2", "--plot-only", "--results-dir", res]) == 1
    err = capsys.readouterr().err
    assert "003-fig2: not drawn" in err and "24 of 24 runs missing" in err
    assert "missing: digits/20 supervised [20 labels (the planned run has 50)]: seeds 0, 1, 2" in err
    assert "python -m bench.figure 003-fig2 --scale cpu runs them" in err
    assert not os.path.exists(os.path.join(res, "figures"))


def test_plot_only_with_some_runs_draws_and_names_the_rest(tmp_path, capsys):
    res = str(tmp_path / "res")
    plan = _plan("000-fig1", "cpu")
    lost = [c for c in plan.configs if c.algorithm == "pseudo_label+l2i_l" and c.seed in (3, 4)]
    write_synthetic(res, [c for c in plan.configs if c not in lost])
    failed = next(c for c in plan.configs if c.algorithm == "pseudo_label" and c.seed == 1)
    write_synthetic(res, [failed], failed={failed.run_id})
    assert bf.main(["000-fig1", "--plot-only", "--results-dir", res]) == 1
    captured = capsys.readouterr()
    assert "drawn:" in captured.out
    assert "missing: two_circles/50 pseudo_label+l2i_l: seeds 3, 4" in captured.err
    assert "missing: two_circles/50 pseudo_label: seed 1" in captured.err
    caption = _png_text(os.path.join(res, "figures", "000-fig1.png"))["Description"]
    assert "37 of 40 runs ok" in caption and "PL seed 1: failed" in caption
    # a finished run that lacks an artifact it is asked for counts as missing
    sl0 = next(c for c in plan.configs if c.algorithm == "supervised" and c.seed == 0)
    os.remove(os.path.join(res, "artifacts", f"{sl0.run_id}.parquet"))
    assert bf.main(["000-fig1", "--plot-only", "--results-dir", res]) == 1
    assert "missing: two_circles/50 supervised: seed 0 (artifacts seed 0: decision_grid)" in capsys.readouterr().err


@pytest.mark.parametrize("landmark_cost_known", [True, False])
def test_dry_run_lists_every_run_and_estimates_shared_runs_once(tmp_path, capsys, monkeypatch, landmark_cost_known):
    from bench import figure_cost

    if not landmark_cost_known:  # the wording of a partial estimate (a dataset without a measured cost)
        monkeypatch.delitem(figure_cost.CPU_STEP_COSTS, "synthetic_landmarks")
    res = tmp_path / "none"
    assert bf.main(["all", "--dry-run", "--results-dir", str(res)]) == 0
    out = capsys.readouterr()
    ids = {c.run_id for n in RUNNABLE for c in _plan(n, "cpu").configs}
    assert f"together: {len(ids)} distinct runs, {len(ids)} to run, about" in out.err
    unmeasured = {c.run_id for n in RUNNABLE for c in _plan(n, "cpu").configs
                  if c.dataset not in figure_cost.CPU_STEP_COSTS}
    assert bool(unmeasured) != landmark_cost_known
    assert (f"for {len(ids) - len(unmeasured)} of them; no estimate for the {len(unmeasured)} on synthetic_landmarks"
            in out.err) == bool(unmeasured)
    assert out.out.count("  todo ") == sum(len(_plan(n, "cpu").configs) for n in RUNNABLE)
    assert not res.exists()


def test_a_figure_this_version_cannot_make_is_refused_in_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(FIGURES, "t-pending", Figure("t-pending", "test", "Fig. 0", "t", "t", needs="a task"))
    with pytest.raises(SystemExit) as e:
        bf.main(["t-pending", "--results-dir", str(tmp_path / "r")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs a task" in err and not (tmp_path / "r").exists()
