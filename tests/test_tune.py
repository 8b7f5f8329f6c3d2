"""python -m bench.tune: what the search may see, seeded proposals, bad input, interrupt + resume."""
from __future__ import annotations

import glob
import json
import math
import os
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest

import tune_spaces
from bench import tune as bt

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_search_metrics_carry_validation_only_and_refuse_test_metrics():
    engine_metrics = {"val_error_ema": 0.25, "val_loss_ema": 0.7, "val_error_raw": 0.3, "val_loss_raw": 0.8,
                      "steps_done": 100, "steps_per_s": 9.0, "loss": 0.5}
    out = bt.tune_metrics(engine_metrics)
    assert out[bt.OBJECTIVE] == 0.25  # the EMA weights' validation error
    assert not any("test" in k for k in out)
    with pytest.raises(ValueError, match="test_error"):
        bt.tune_metrics({**engine_metrics, "test_error": 0.1})
    # A key the search has no business with is dropped, not passed on.
    assert "weights_norm" not in bt.tune_metrics({**engine_metrics, "weights_norm": 3.0})


def test_final_objective_is_the_last_ema_validation_error_and_worst_for_failed_runs():
    rows = [{"step": s, "split": sp, "model": m, "error": e} for s, sp, m, e in (
        (40, "val", "ema", 0.3), (40, "test", "ema", 0.01), (80, "val", "raw", 0.2), (80, "val", "ema", 0.25),
        (80, "test", "ema", 0.02))]
    assert bt.last_val_error(rows) == 0.25
    assert bt.final_objective({"status": "ok"}, 0.25) == 0.25
    assert bt.final_objective({"status": "diverged"}, 0.1) == 1.0
    assert bt.final_objective({"status": "ok"}, float("nan")) == 1.0


def _proposals(space, seed: int, n: int) -> list[dict]:
    searcher = bt.make_searcher(space, seed)
    return [searcher.suggest(f"t{i}") for i in range(n)]


def test_same_seed_proposes_the_same_first_trials_inside_the_space():
    space = tune_spaces.space_for("mixmatch")  # int K, log-scaled lambda_u, linear T/alpha
    a, b, c = _proposals(space, 0, 6), _proposals(space, 0, 6), _proposals(space, 1, 6)
    assert a == b
    assert a != c
    for prop in a + c:
        assert set(prop) == set(space.params)
        for name, v in prop.items():
            p = space.params[name]
            assert p.low <= v <= p.high
            assert isinstance(v, int) == p.integer


def test_small_search_starts_modelling_after_a_third_of_its_trials():
    """An 8-trial search models results after 2 random proposals (Optuna's default waits 10):
    told that low lambda_u is good, its third proposal concentrates there, unlike the same
    seed's random start-up draws."""
    space = tune_spaces.select(tune_spaces.space_for("mixmatch"), ["lambda_u"])

    def third_proposals(trials):
        out = []
        for seed in range(8):
            searcher = bt.make_searcher(space, seed, trials)
            for i in range(2):
                prop = searcher.suggest(f"t{i}")
                searcher.on_trial_complete(f"t{i}", {bt.OBJECTIVE: prop["lambda_u"]})  # smaller is better
            out.append(searcher.suggest("t2")["lambda_u"])
        return out

    modelled, random_ = third_proposals(8), third_proposals(None)
    assert bt.startup_trials(8) == 2 and bt.startup_trials(None) == 10 and bt.startup_trials(100) == 10
    assert modelled != random_
    assert sorted(modelled)[4] < sorted(random_)[4]  # the median proposal moved toward the better region


def test_log_scaled_parameter_is_sampled_log_uniformly():
    # Independent check of the scale: log-uniform on [1, 300] puts half the mass below
    # sqrt(300) = 17.3; uniform would put 5.5% there. With no result told, TPE keeps drawing
    # from its random start-up sampler.
    space = tune_spaces.select(tune_spaces.space_for("mixmatch"), ["lambda_u"])
    vals = [p["lambda_u"] for p in _proposals(space, 3, 200)]
    below = sum(v < math.sqrt(300) for v in vals) / len(vals)
    assert 0.38 < below < 0.62


@pytest.mark.parametrize("argv,needle", [
    (["--algorithm", "meta_semi", "--trials", "0"], "--trials must be positive"),
    (["--algorithm", "meta_semi", "--params", "gamma"], "no searchable hyperparameter 'gamma'"),
    (["--algorithm", "nope"], "unknown algorithm"),
    (["--algorithm", "supervised"], "no searchable hyperparameters"),
    (["--algorithm", "meta_semi", "--workers", "4", "--num-cpus", "2"], "needs 4 CPUs"),
    (["--resume", "0123456789abcdef"], "no search"),
])
def test_bad_input_is_one_line_and_exit_2_before_ray(argv, needle, tmp_path, capsys):
    import ray

    with pytest.raises(SystemExit) as e:
        bt.main(argv + ["--results-dir", str(tmp_path)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err
    assert not ray.is_initialized()


def _search_cmd(results) -> list[str]:
    return [sys.executable, "-m", "bench.tune", "--algorithm", "mean_teacher", "--dataset", "two_circles",
            "--trials", "3", "--steps", "60", "--scheduler", "fifo", "--concurrency", "1", "--final-seeds", "2",
            "--num-cpus", "2", "--results-dir", str(results)]


def _log_events(results) -> list[list[str]]:
    (log,) = glob.glob(os.path.join(results, "tune", "*", "trainings.log"))
    with open(log) as f:
        return [line.split() for line in f]


@pytest.mark.ray
@pytest.mark.timeout(420)
def test_interrupted_search_resumes_without_repeating_finished_trials(tmp_path):
    results = tmp_path / "results"
    env = dict(os.environ, PYTHONPATH=REPO)
    # 1. Start the search and interrupt it (SIGINT, as Ctrl-C) once the first trial is in the trials table.
    p = subprocess.Popen(_search_cmd(results), cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 240
    while not glob.glob(str(results / "trials" / "*.parquet")):
        assert p.poll() is None, p.stdout.read()
        assert time.time() < deadline, "no trial finished in time"
        time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    out1, _ = p.communicate(timeout=180)
    assert p.returncode == 130, out1  # interrupted, not finished
    (trials_file,) = glob.glob(str(results / "trials" / "*.parquet"))
    first = pq.read_table(trials_file).to_pylist()
    assert 1 <= len(first) < 3
    done_before = {r["trial_id"]: r["run_id"] for r in first if r["status"] == "ok"}
    mtimes = {rid: os.stat(results / "runs" / f"{rid}.parquet").st_mtime_ns for rid in done_before.values()}
    events_before = len(_log_events(results))

    # 2. The same command finishes the search.
    out2 = subprocess.run(_search_cmd(results), cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out2.returncode == 0, out2.stdout + out2.stderr
    assert "resuming search" in out2.stdout
    trials = pq.read_table(trials_file).to_pylist()
    assert len(trials) == 3 and len({t["trial_id"] for t in trials}) == 3
    assert len({t["params_json"] for t in trials}) == 3
    new_events = _log_events(results)[events_before:]
    # No trial finished before the interruption trained again; nothing trained to the end twice.
    assert not any(e[1] in done_before for e in new_events), new_events
    ends = [e[2] for e in _log_events(results) if e[0] == "end"]
    assert len(ends) == len(set(ends))
    for rid, m in mtimes.items():
        assert os.stat(results / "runs" / f"{rid}.parquet").st_mtime_ns == m

    # 3. The search never saw a test metric; the objective is each trial's validation error.
    runs = {os.path.basename(f)[:-8]: pq.read_table(f).to_pylist()[0] for f in glob.glob(str(results / "runs" / "*.parquet"))}
    for t in trials:
        assert not [k for k in t["reported_metrics"].split(",") if "test" in k.lower()]
        assert t["status"] == "ok" and t["steps_reached"] == 60
        evals = pq.read_table(results / "evals" / f"{t['run_id']}.parquet").to_pylist()
        last_val = [e["error"] for e in evals if e["split"] == "val" and e["model"] == "ema" and e["step"] == 60]
        assert t["val_error"] == pytest.approx(last_val[0])

    # 4. The result: best = lowest validation error; test error = mean over the final runs' rows.
    (search_file,) = glob.glob(str(results / "searches" / "*.parquet"))
    s = pq.read_table(search_file).to_pylist()[0]
    best = min(trials, key=lambda t: (t["val_error"], t["trial_number"]))
    assert s["best_val_error"] == best["val_error"] and json.loads(s["best_params_json"]) == json.loads(best["params_json"])
    finals = json.loads(s["final_run_ids_json"])
    assert len(finals) == 2 and finals[0] == best["run_id"]  # seed 0 of the best config is the best trial's run
    test_errors = [runs[r]["test_error"] for r in finals]
    assert s["test_error_mean"] == pytest.approx(sum(test_errors) / 2)
    assert all(runs[r]["suite"] == f"tune:{s['search_id']}" for r in finals)
    assert "best parameters:" in out2.stdout and "test error over 2 seeds" in out2.stdout

    # 5. --config-from applies the found values and records where they came from.
    from bench.run import build_parser, plan

    configs, _ = plan(build_parser().parse_args(["--config-from", s["search_id"], "--results-dir", str(results),
                                                  "--datasets", "two_circles", "--algorithms", "mean_teacher",
                                                  "--seeds", "1"]))
    params = json.loads(s["best_params_json"])
    assert {k: configs[0].hparams[k] for k in params} == params
    assert configs[0].preset == f"search:{s['search_id']}" and s["search_id"] in configs[0].protocol_notes

    # 6. Once finished, the same command prints the stored result without starting Ray.
    out3 = subprocess.run(_search_cmd(results), cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert out3.returncode == 0 and "already finished" in out3.stdout


@pytest.mark.ray
@pytest.mark.timeout(420)
def test_multi_worker_trials_run_as_ray_train_worker_groups(tmp_path):
    """Trials launch through bench.ray_launch like bench.run's: --workers 2 makes every trial (and
    the final re-run) a 2-worker Ray Train run whose workers end with identical parameters."""
    results = tmp_path / "results"
    assert bt.main(["--algorithm", "mean_teacher", "--dataset", "two_circles", "--trials", "1", "--steps", "20",
                    "--params", "lambda_u", "--scheduler", "fifo", "--final-seeds", "1", "--workers", "2",
                    "--num-cpus", "2", "--results-dir", str(results)]) == 0
    (trials_file,) = glob.glob(str(results / "trials" / "*.parquet"))
    (trial,) = pq.read_table(trials_file).to_pylist()
    assert trial["status"] == "ok" and trial["steps_reached"] == 20
    runs = [pq.read_table(f).to_pylist()[0] for f in glob.glob(str(results / "runs" / "*.parquet"))]
    assert runs and all(r["workers"] == 2 and r["status"] == "ok" for r in runs)
    assert all(r["worker_param_divergence"] == 0.0 for r in runs)
