"""python -m bench.tune: search a method's hyperparameters on the scarce validation split.

Ray Tune runs the trials, Optuna's TPE sampler (seeded) proposes them, ASHA stops the ones
that fall behind at intermediate evaluations. The objective is the validation error of the
EMA weights on the validation split that is as scarce as the labels (Oliver et al. 2018):
the trials report only validation metrics (:func:`tune_metrics` refuses anything else), so
neither Optuna nor ASHA ever sees a test error. After the search, the best configuration is
re-run over ``--final-seeds`` training seeds and reported with its test error.

Tables (Parquet, under ``--results-dir``): ``trials/<search_id>`` (one row per trial),
``searches/<search_id>`` (the result and its cost), and the usual ``runs/`` and ``evals/``
rows of every trial that reached its budget and of the final re-runs (suite
``tune:<search_id>``). The search id is a hash of everything that determines the search,
so running the same command again resumes an interrupted search (Tune's experiment state
lives in ``<results-dir>/tune/<search_id>``) or, once it has finished, prints its result.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import hashlib
import json
import math
import os
import sys
import time
from typing import Any

from ray.tune import Callback

from algorithms import ConfigError

from .cli_errors import UsageError, csv_list, fail, interrupted, make_parser
from .config import RunConfig, RunEnv
from .ray_node import DEFAULT_CONNECT_TIMEOUT_S, RayStartError

PROG = "bench.tune"
OBJECTIVE = "objective_val_error"
# ASHA's clock: reported at intermediate evaluations only, so ASHA never stops a trial at its
# last evaluation, before the trial has written its run row.
ASHA_TIME = "asha_steps"
_SAFE_KEYS = {"steps_done", "steps_per_s", "loss", "run_status", ASHA_TIME, OBJECTIVE}


# ---------------------------------------------------------------- what a trial may report

def tune_metrics(metrics: dict, objective: float | None = None) -> dict:
    """The subset of engine metrics a search may see, plus the objective.

    Only ``val_*`` metrics and progress counters pass; a metric naming the test set raises
    (the engine never reports one: this guards against a future change leaking it).
    ``objective`` defaults to the EMA weights' current validation error.
    """
    leaked = sorted(k for k in metrics if "test" in k.lower())
    if leaked:
        raise ValueError(f"test metrics must not reach the search: {', '.join(leaked)}")
    out = {k: v for k, v in metrics.items() if k.startswith("val_") or k in _SAFE_KEYS}
    out[OBJECTIVE] = float(metrics["val_error_ema"] if objective is None else objective)
    return out


def final_objective(run_row: dict, last_val_error: float | None) -> float:
    """Objective of a trial that reached its budget: the EMA weights' validation error at the
    last evaluation, as at every intermediate report (so trials stopped early and finished
    ones are compared on the same quantity); 1.0 (every answer wrong) for a failed or
    diverged run, so TPE learns to avoid the region."""
    ok = run_row.get("status") == "ok" and last_val_error is not None and math.isfinite(last_val_error)
    return float(last_val_error) if ok else 1.0


class _SearchReporter:
    """Wraps the engine's Tune/Train reporter: filtered metrics, ASHA clock, objective."""

    def __init__(self, inner, steps: int) -> None:
        self.inner, self.steps = inner, steps
        self.last_val_error: float | None = None

    def report(self, metrics: dict, state: dict | None) -> None:
        out = tune_metrics(metrics)
        self.last_val_error = out[OBJECTIVE]
        if metrics.get("steps_done", 0) < self.steps:
            out[ASHA_TIME] = metrics["steps_done"]
        self.inner.report(out, state)

    def restore(self) -> dict | None:
        return self.inner.restore()


def _final_report(run_row: dict, last_val_error: float | None) -> dict:
    metrics = {"steps_done": int(run_row["steps_done"]), "run_status": run_row["status"],
               "val_error_final": float(run_row["val_error"])}
    return tune_metrics(metrics, objective=final_objective(run_row, last_val_error))


def _last_val_error(eval_rows: list[dict]) -> float | None:
    """EMA validation error at the last evaluation of a run's eval rows (None if there is none)."""
    val = [r for r in eval_rows if r["split"] == "val" and r["model"] == "ema"]
    return float(max(val, key=lambda r: r["step"])["error"]) if val else None


def _log(path: str, *fields: Any) -> None:
    # One line per training start / end / reuse: how tests and users count trainings across resumes.
    with open(path, "a") as f:
        f.write(" ".join(str(x) for x in fields) + "\n")


def _trial_run_config(config: dict, base: dict) -> RunConfig:
    run = dict(base["run"])
    run["hparams"] = {**run["hparams"], **config}
    return RunConfig.from_dict(run)


def _search_loop_per_worker(job: dict) -> None:
    """Body of each Ray Train worker of a multi-worker trial."""
    import ray.train
    import ray.train.torch
    import torch

    from algorithms import make_comm

    from .engine import train_run
    from .ray_launch import _threads_for_trial, _TrainReporter

    _threads_for_trial()
    cfg, env = RunConfig.from_dict(job["run"]), RunEnv(**job["env"])
    device = ray.train.torch.get_device() if env.gpus_per_worker > 0 else torch.device("cpu")
    outcome = train_run(cfg, env, reporter=_SearchReporter(_TrainReporter(), cfg.steps), comm=make_comm(), device=device)
    ray.train.report(_final_report(outcome.run_row, _last_val_error(outcome.eval_rows)))


def search_trial(config: dict, base: dict) -> None:
    """A Tune trial: train ``base``'s run config with the proposed hyperparameters ``config``.

    A run already finished in the store (a trial re-run after a hard kill of the driver)
    reports its stored result instead of training again.
    """
    from ray import tune

    from algorithms import Comm
    from results import ResultStore

    from .engine import train_run
    from .ray_launch import _threads_for_trial, _TuneReporter

    cfg, env = _trial_run_config(config, base), RunEnv(**base["env"])
    trial_id = tune.get_context().get_trial_id()
    store = ResultStore(env.results_dir)
    done = store.load_runs([cfg.run_id])
    if len(done) and done.iloc[0]["status"] in ("ok", "diverged"):
        _log(base["log"], "reuse", trial_id, cfg.run_id)
        evals = store.load_evals([cfg.run_id])
        tune.report(_final_report(done.iloc[0].to_dict(), _last_val_error(evals.to_dict("records"))))
        return
    _log(base["log"], "start", trial_id, cfg.run_id, "resume" if tune.get_checkpoint() else "fresh")
    if cfg.workers == 1:
        _threads_for_trial()
        outcome = train_run(cfg, env, reporter=_SearchReporter(_TuneReporter(), cfg.steps), comm=Comm(), device="cpu")
        _log(base["log"], "end", trial_id, cfg.run_id, outcome.status)
        tune.report(_final_report(outcome.run_row, _last_val_error(outcome.eval_rows)))
        return
    import ray.train
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    job = {"run": dict(cfg.to_dict(), optim=dataclasses.asdict(cfg.optim)), "env": base["env"]}
    trainer = TorchTrainer(
        _search_loop_per_worker, train_loop_config=job,
        scaling_config=ray.train.ScalingConfig(num_workers=cfg.workers, resources_per_worker={"CPU": 1}),
        run_config=ray.train.RunConfig(
            name=f"train-{trial_id}", storage_path=os.path.join(base["tune_dir"], "train"),
            callbacks=[TuneReportCallback()], checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1)),
    )
    trainer.fit()
    _log(base["log"], "end", trial_id, cfg.run_id, "train")


# ---------------------------------------------------------------- the search spec

@dataclasses.dataclass(frozen=True)
class SearchSpec:
    """Everything that determines a search's proposals and trials (hashed into its id)."""

    algorithm: str
    base_run: dict            # the trials' run config (seed 0) without the searched values
    space: dict               # {name: [low, high, scale, integer]} of the searched parameters
    trials: int
    seed: int
    scheduler: str

    @property
    def search_id(self) -> str:
        blob = json.dumps(dataclasses.asdict(self), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def build_parser() -> argparse.ArgumentParser:
    p = make_parser(PROG, "bench.tune", __doc__.splitlines()[0])
    p.add_argument("--algorithm", help="method to tune (a base method or BASE+RULE)")
    p.add_argument("--dataset", default="digits", help="dataset (its quick-suite recipe; full recipes for paper datasets)")
    p.add_argument("--labels", type=int, help="number of labeled examples (default: the recipe's first)")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the labeled/validation split searched on")
    p.add_argument("--trials", type=int, default=8, help="number of trials (configurations) to try")
    p.add_argument("--steps", type=int, help="step budget of each trial and final run (default: the recipe's)")
    p.add_argument("--params", type=csv_list(str), help="search only these hyperparameters (default: every one in the space)")
    p.add_argument("--seed", type=int, default=0, help="seed of Optuna's TPE sampler (same seed: same proposals)")
    p.add_argument("--scheduler", choices=["asha", "fifo"], default="asha",
                   help="asha: stop trials behind at 1/4 and 1/2 of the budget; fifo: run every trial to the end")
    p.add_argument("--concurrency", type=int, help="trials at once (default: as many as the CPUs allow)")
    p.add_argument("--final-seeds", type=int, default=3, help="training seeds the best configuration is re-run on")
    p.add_argument("--preset", help="start from named paper settings (see python -m bench.presets)")
    p.add_argument("--workers", type=int, default=1, help="Ray Train workers per trial (1: a plain Tune trial)")
    p.add_argument("--num-cpus", type=int, help="CPUs of the local Ray instance (default: this machine's)")
    p.add_argument("--results-dir", default="bench-results", help="where the Parquet tables and Tune state go")
    p.add_argument("--data-root", help="folder with dataset files")
    p.add_argument("--resume", metavar="SEARCH_ID", help="resume (or show) this search; other search flags must be omitted")
    p.add_argument("--address", help="Ray cluster address to join (default: RAY_ADDRESS, else a local Ray)")
    p.add_argument("--connect-timeout", type=float, default=DEFAULT_CONNECT_TIMEOUT_S, metavar="SECONDS",
                   help="give up (exit 2) when the cluster at --address does not answer in this time")
    p.add_argument("--show-space", action="store_true", help="print the algorithm's search space and exit")
    return p


_SEARCH_FLAGS = ("algorithm", "dataset", "split_seed", "labels", "trials", "steps", "params", "seed", "scheduler", "preset", "workers")


def _spec_from_args(args: argparse.Namespace) -> tuple[SearchSpec, RunEnv]:
    """Validate the command line and build the search spec; UsageError on bad input."""
    import tune_spaces

    from . import run as bench_run
    from .suites import RECIPES

    if args.algorithm is None:
        raise UsageError("--algorithm is required (or --resume SEARCH_ID)")
    if args.trials <= 0:
        raise UsageError(f"--trials must be positive, got {args.trials}")
    if args.final_seeds < 0:
        raise UsageError(f"--final-seeds must be >= 0, got {args.final_seeds}")
    if args.concurrency is not None and args.concurrency < 1:
        raise UsageError(f"--concurrency must be at least 1, got {args.concurrency}")
    if args.seed < 0:
        raise UsageError(f"--seed must be non-negative, got {args.seed}")
    try:
        space = tune_spaces.select(tune_spaces.space_for(args.algorithm), args.params)
    except (ConfigError, ValueError) as e:
        raise UsageError(str(e)) from None
    if not space.params:
        raise UsageError(f"{args.algorithm} has no searchable hyperparameters")
    import datasets

    if args.dataset not in datasets.list_datasets():
        raise UsageError(f"unknown dataset {args.dataset!r} (valid: {', '.join(datasets.list_datasets())})")
    labels = args.labels if args.labels is not None else RECIPES[args.dataset].labels[0]
    # bench.run's own defaults for every flag it has (it grows flags), then ours.
    ns = bench_run.build_parser().parse_args([])
    vars(ns).update(dict(suite="quick", algorithms=[args.algorithm], datasets=[args.dataset], labels=[labels],
                            seeds=1, split_seed=args.split_seed, preset=args.preset, network=None, steps=args.steps,
                            val_protocol="scarce", workers=args.workers, gpus_per_worker=0.0,
                            results_dir=args.results_dir, data_root=args.data_root, download=False))
    configs, env = bench_run.plan(ns)
    base = configs[0].resolved()
    # The searched values are the trial's own: keep them out of the base so the id depends on the space only.
    hp = {k: v for k, v in base.hparams.items() if k not in space.params}
    base_run = dict(dataclasses.replace(base, hparams=hp, suite="").to_dict(), optim=dataclasses.asdict(base.optim))
    space_json = {n: [p.low, p.high, p.scale, p.integer] for n, p in space.params.items()}
    spec = SearchSpec(args.algorithm, base_run, space_json, args.trials, args.seed, args.scheduler)
    return spec, env


def _space_of(spec: SearchSpec):
    import tune_spaces

    params = {n: tune_spaces.Param(low, low, high, scale, integer) for n, (low, high, scale, integer) in spec.space.items()}
    return tune_spaces.Space(spec.algorithm, params, tune_spaces.paper_hps(spec.algorithm))


def startup_trials(trials: int | None) -> int:
    """Random trials before TPE models the results: Optuna's 10, or a third of a smaller
    search (at least 2), so that an 8-trial search is not random search in disguise."""
    return 10 if trials is None else min(10, max(2, trials // 3))


def make_searcher(spec_space, seed: int, trials: int | None = None):
    """OptunaSearch over ``spec_space`` (a ``tune_spaces.Space``) with a seeded TPE sampler
    that starts modelling after :func:`startup_trials` of ``trials`` random proposals.

    Same space, seed and trials -> the same sequence of proposals (in the order trials are created).
    """
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    import tune_spaces

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return OptunaSearch(tune_spaces.to_optuna(spec_space), metric=OBJECTIVE, mode="min",
                        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup_trials(trials)))


def make_scheduler(kind: str, steps: int, eval_every: int):
    """ASHA on the validation objective, clocked by steps: rungs at 1/4 and 1/2 of the budget
    (at least one evaluation in), halving the trials at each; or FIFO (no early stopping)."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if kind == "fifo":
        return FIFOScheduler()
    grace = max(eval_every, steps // 4)
    return ASHAScheduler(time_attr=ASHA_TIME, metric=OBJECTIVE, mode="min", max_t=max(steps, grace),
                         grace_period=grace, reduction_factor=2)


# ---------------------------------------------------------------- trial bookkeeping

def _trial_row(search_id: str, trial, names: list[str], keys: set[str], errored: bool, run_id: str) -> dict:
    """One trials-table row from a finished Tune trial (its last reported result)."""
    from results.trials import hp_columns

    last = trial.last_result or {}
    params = {n: trial.config.get(n) for n in names}
    run_status = last.get("run_status")
    # A trial that ended without its final report (no run status) was stopped by ASHA.
    status = "errored" if errored else run_status if run_status is not None else "stopped_early"
    val = last.get(OBJECTIVE)
    try:  # Tune's experiment tag starts with the trial's creation counter (1, 2, ...)
        number = int(str(trial.experiment_tag).split("_", 1)[0])
    except (AttributeError, ValueError):
        number = -1
    row = {
        "search_id": search_id, "trial_id": str(trial.trial_id), "trial_number": number,
        "params_json": json.dumps(params, sort_keys=True), "val_error": None if val is None else float(val),
        "steps_reached": int(last.get("steps_done", 0) or 0), "stopped_early": status == "stopped_early",
        "status": status, "wall_time_s": float(last.get("time_total_s", 0.0) or 0.0), "run_id": run_id,
        "reported_metrics": ",".join(sorted(keys)),
        "finished_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    row.update(hp_columns(params))
    return row


class SearchProgress(Callback):
    """Writes each finished trial to the trials table and prints one line for it.

    Tune pickles its callbacks with the experiment and restores them on resume; the rows
    written so far are (re)loaded from the Parquet table in ``setup``, which Tune calls at
    the start of every (resumed) run.
    """

    def __init__(self, search_id: str, names: list[str], steps: int, trials: int, root: str, base: dict) -> None:
        self.search_id, self.names, self.steps, self.trials = search_id, names, steps, trials
        self.root, self.base = root, base
        self.rows: dict[str, dict] = {}
        self.keys: dict[str, set[str]] = {}

    def setup(self, **info) -> None:
        from results.trials import SearchStore

        old = SearchStore(self.root).load_trials([self.search_id])
        self.rows = {r["trial_id"]: {k: v for k, v in r.items() if not _is_missing(v)} for r in old.to_dict("records")}
        self.keys = {t: set(filter(None, r.get("reported_metrics", "").split(","))) for t, r in self.rows.items()}
        self.started = time.perf_counter()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.keys.setdefault(trial.trial_id, set()).update(k for k in result if k != "config")

    def _finish(self, trial, errored: bool) -> None:
        from results.trials import SearchStore

        run_id = _trial_run_config({n: trial.config[n] for n in self.names}, self.base).run_id
        row = _trial_row(self.search_id, trial, self.names, self.keys.get(trial.trial_id, set()), errored, run_id)
        self.rows[row["trial_id"]] = row
        SearchStore(self.root).write_trials(self.search_id, self.rows.values())
        params = ", ".join(f"{n}={_fmt(trial.config[n])}" for n in self.names)
        val = row["val_error"]
        print(f"[{len(self.rows)}/{self.trials} trials, {time.perf_counter() - self.started:5.0f}s] {params}: "
              f"{row['status']} at step {row['steps_reached']}/{self.steps}, val err "
              f"{'n/a' if val is None else f'{100 * val:.1f}%'}", flush=True)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._finish(trial, errored=False)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._finish(trial, errored=True)


def _trial_dirname(trial) -> str:
    return f"trial_{trial.trial_id}"


def _is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


# ---------------------------------------------------------------- driver

def check_resources(workers: int, cpus: float, where: str) -> int:
    """Trials that can run at once; UsageError if one trial needs more CPUs than exist.

    A multi-worker trial's driver holds no CPU (it only waits for its workers): the
    workers get every CPU the trial needs, so W workers on exactly W CPUs cannot deadlock.
    """
    if workers > cpus:
        raise UsageError(f"--workers {workers}: each trial needs {workers} CPUs but {where} has {cpus:g}")
    return max(1, int(cpus // workers))


def run_search(spec: SearchSpec, env: RunEnv, concurrency: int) -> bool:
    """Run (or resume) the Tune search; True when every trial has finished."""
    from ray import tune

    from results.trials import SearchStore

    search_id = spec.search_id
    tune_root = os.path.join(env.results_dir, "tune")
    exp_path = os.path.join(tune_root, search_id)
    os.makedirs(exp_path, exist_ok=True)
    base = {"run": dict(spec.base_run, suite=f"tune:{search_id}"), "env": dataclasses.asdict(env),
            "log": os.path.join(exp_path, "trainings.log"), "tune_dir": exp_path}
    resources = {"CPU": 0, "memory": 64 * 1024 ** 2} if spec.base_run["workers"] > 1 else {"CPU": 1}
    trainable = tune.with_resources(tune.with_parameters(search_trial, base=base), resources)
    import logging

    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    logging.getLogger("ray.tune.search.optuna.optuna_search").setLevel(logging.ERROR)
    if tune.Tuner.can_restore(exp_path):
        print(f"{PROG}: resuming search {search_id} from {exp_path}", flush=True)
        tuner = tune.Tuner.restore(exp_path, trainable=trainable, resume_unfinished=True, resume_errored=False)
    else:
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=make_searcher(_space_of(spec), spec.seed, spec.trials),
                scheduler=make_scheduler(spec.scheduler, spec.base_run["steps"], spec.base_run["eval_every"]),
                num_samples=spec.trials, max_concurrent_trials=concurrency,
                trial_dirname_creator=_trial_dirname),
            run_config=tune.RunConfig(
                name=search_id, storage_path=tune_root, verbose=0,
                callbacks=[SearchProgress(search_id, list(spec.space), spec.base_run["steps"], spec.trials,
                                          env.results_dir, base)],
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                failure_config=tune.FailureConfig(max_failures=0)),
        )
    tuner.fit()
    trials = SearchStore(env.results_dir).load_trials([search_id])
    return len(trials) >= spec.trials


def best_trial(trials) -> dict:
    """Lowest validation objective among trials that reached their budget (all trials if none did)."""
    full = trials[trials["status"] == "ok"]
    pool = full if len(full) else trials[trials["val_error"].notna()]
    if not len(pool):
        raise RuntimeError("no trial reported a validation error")
    return pool.sort_values(["val_error", "trial_number"]).iloc[0].to_dict()


def final_configs(spec: SearchSpec, params: dict, seeds: int) -> list[RunConfig]:
    run = dict(spec.base_run, suite=f"tune:{spec.search_id}")
    run["hparams"] = {**run["hparams"], **params}
    return [RunConfig.from_dict(dict(run, seed=s)) for s in range(seeds)]


def summarize_search(spec: SearchSpec, env: RunEnv, final_seeds: int) -> dict:
    """The searches-table row: best trial, final runs' test error, cost."""
    from results import ResultStore
    from results.trials import SearchStore

    trials = SearchStore(env.results_dir).load_trials([spec.search_id])
    best = best_trial(trials)
    params = json.loads(best["params_json"])
    finals = final_configs(spec, params, final_seeds)
    runs = ResultStore(env.results_dir).load_runs([c.run_id for c in finals])
    ok = runs[runs["status"] == "ok"]
    test = ok["test_error"].astype(float)
    workers = spec.base_run["workers"]
    return {
        "search_id": spec.search_id, "algorithm": spec.algorithm, "dataset": spec.base_run["dataset"],
        "n_labels": spec.base_run["n_labels"], "split_seed": spec.base_run["split_seed"],
        "steps": spec.base_run["steps"], "trials": spec.trials, "seed": spec.seed,
        "space_json": json.dumps(spec.space, sort_keys=True),
        "paper_hps": _space_of(spec).paper_hps if _space_of(spec).paper_hps is not None else -1,
        "objective": "validation error of the EMA weights on the scarce validation split at the trial's last "
                     "evaluation (1.0 for failed or diverged runs)",
        "best_trial_id": best["trial_id"], "best_params_json": json.dumps(params, sort_keys=True),
        "best_val_error": float(best["val_error"]), "final_seeds": final_seeds,
        "final_run_ids_json": json.dumps([c.run_id for c in finals]),
        "test_error_mean": float(test.mean()) if len(test) else float("nan"),
        "test_error_std": float(test.std(ddof=1)) if len(test) > 1 else float("nan"),
        "n_trials_finished": int(len(trials)), "n_stopped_early": int(trials["stopped_early"].sum()),
        "n_errored": int((trials["status"] == "errored").sum()),
        "trial_compute_s": float(trials["wall_time_s"].sum()) * workers,
        "final_compute_s": float(runs["wall_time_s"].sum()) * workers if len(runs) else 0.0,
        "base_config_json": json.dumps(spec.base_run, sort_keys=True, default=str),
        "finished_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **{f"best_{k}": v for k, v in params.items()},
        **{f"final_test_error_seed{i}": float(r["test_error"]) for i, r in enumerate(runs.sort_values("seed").to_dict("records"))},
    }


def format_search(row: dict) -> str:
    params = json.loads(row["best_params_json"])
    te, sd = row["test_error_mean"], row["test_error_std"]
    lines = [
        f"search {row['search_id']}: {row['algorithm']} on {row['dataset']}/{row['n_labels']} "
        f"(split seed {row['split_seed']}, {row['steps']} steps, {row['trials']} trials, TPE seed {row['seed']})",
        "best parameters: " + ", ".join(f"{k}={_fmt(v)}" for k, v in params.items()),
        f"validation error (objective, best trial): {100 * row['best_val_error']:.2f}%",
        f"test error over {row['final_seeds']} seeds: "
        + ("n/a" if not math.isfinite(te) else f"{100 * te:.2f}%" + ("" if not math.isfinite(sd) else f" +- {100 * sd:.2f}%")),
        f"cost: {row['n_trials_finished']} trials ({row['n_stopped_early']} stopped early, {row['n_errored']} errored), "
        f"{row['trial_compute_s']:.0f} CPU-s in trials + {row['final_compute_s']:.0f} CPU-s in final runs",
        f"use it: python -m bench.run --config-from {row['search_id']} --datasets {row['dataset']} "
        f"--algorithms {row['algorithm']}",
    ]
    return "\n".join(lines)


def _load_spec(results_dir: str, search_id: str) -> SearchSpec:
    path = os.path.join(os.path.abspath(results_dir), "tune", search_id, "spec.json")
    if not os.path.isfile(path):
        raise UsageError(f"no search {search_id!r} under {os.path.abspath(results_dir)} (no {path})")
    with open(path) as f:
        data = json.load(f)
    return SearchSpec(**data)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from results import ResultsDirError, ResultStore
    from results.trials import SearchStore

    try:
        if args.show_space:
            import tune_spaces

            if args.algorithm is None:
                raise UsageError("--show-space needs --algorithm")
            try:
                space = tune_spaces.space_for(args.algorithm)
            except ConfigError as e:
                raise UsageError(str(e)) from None
            print(tune_spaces.describe(space) or "(no searchable hyperparameters)")
            print(f"#HPs in the papers: {space.paper_hps if space.paper_hps is not None else 'n/a'}")
            return 0
        if args.resume:
            given = [f"--{k.replace('_', '-')}" for k in _SEARCH_FLAGS
                     if getattr(args, k) != build_parser().get_default(k)]
            if given:
                raise UsageError(f"--resume takes the search's own settings; drop {', '.join(given)}")
            spec = _load_spec(args.results_dir, args.resume)
            env = RunEnv(results_dir=os.path.abspath(args.results_dir),
                         data_root=os.path.abspath(args.data_root) if args.data_root else None)
        else:
            spec, env = _spec_from_args(args)
        remote = bool(args.address or os.environ.get("RAY_ADDRESS"))
        if args.num_cpus is not None and args.num_cpus < 1:
            raise UsageError("--num-cpus must be at least 1")
        workers = spec.base_run["workers"]
        local_cpus = args.num_cpus or os.cpu_count() or 1
        if not remote:
            slots = check_resources(workers, local_cpus, "this machine")
        search_id = spec.search_id
        sstore = SearchStore(env.results_dir)
        finished = sstore.search(search_id)
        if finished is None:
            ResultStore(env.results_dir).check_writable()
    except (UsageError, ResultsDirError) as e:
        fail(PROG, str(e))

    if finished is not None and finished["final_seeds"] >= args.final_seeds:
        print(f"{PROG}: search {search_id} already finished")
        print(format_search(finished))
        return 0
    started = time.perf_counter()
    names = ", ".join(spec.space)
    print(f"{PROG}: search {search_id}: {spec.algorithm} on {spec.base_run['dataset']}/{spec.base_run['n_labels']}, "
          f"{spec.trials} trials over {names}, {spec.base_run['steps']} steps each; results in {env.results_dir}",
          flush=True)
    from . import ray_launch

    try:
        try:  # Ray first: nothing is written under the results directory before it is up
            resources = ray_launch.start_ray(args.address, None if remote else local_cpus,
                                             connect_timeout=args.connect_timeout)
        except RayStartError as e:
            fail(PROG, str(e))
        tune_dir = os.path.join(env.results_dir, "tune", search_id)
        os.makedirs(tune_dir, exist_ok=True)
        with open(os.path.join(tune_dir, "spec.json"), "w") as f:
            json.dump(dataclasses.asdict(spec), f, sort_keys=True, indent=1, default=str)
        cpus = resources.get("CPU", 0)
        try:
            slots = check_resources(workers, cpus, "the cluster")
        except UsageError as e:
            fail(PROG, str(e))
        concurrency = min(args.concurrency or slots, slots, spec.trials)
        if args.concurrency and args.concurrency > slots:
            print(f"{PROG}: --concurrency {args.concurrency} capped to {slots} (CPUs {cpus:g}, {workers} per trial)")
        complete = run_search(spec, env, concurrency)
        if not complete:
            print(f"{PROG}: search {search_id} interrupted; run the same command (or --resume {search_id}) "
                  f"to finish it", file=sys.stderr, flush=True)
            return 130
        trials = sstore.load_trials([search_id])
        if not trials["val_error"].notna().any():
            print(f"{PROG}: every trial of search {search_id} errored (see the trial logs under {env.results_dir}/tune/"
                  f"{search_id}); nothing to re-run", file=sys.stderr, flush=True)
            return 1
        best = best_trial(trials)
        params = json.loads(best["params_json"])
        finals = final_configs(spec, params, args.final_seeds)
        done = ResultStore(env.results_dir).finished_run_ids()
        todo = [c for c in finals if c.run_id not in done]
        print(f"{PROG}: best trial {best['trial_id']} ({', '.join(f'{k}={_fmt(v)}' for k, v in params.items())}, "
              f"val err {100 * best['val_error']:.2f}%); {len(finals)} final runs, {len(todo)} to train", flush=True)
        if todo:
            ray_launch.run_grid(todo, env, name=f"{search_id}-final", max_concurrent=max(1, int(cpus // workers)))
    except KeyboardInterrupt:
        ray_launch.stop_ray()
        interrupted(PROG, f"run the same command (or --resume {search_id}) to finish the search")
    finally:
        ray_launch.stop_ray()
    row = summarize_search(spec, env, args.final_seeds)
    sstore.write_search(row)
    print()
    print(format_search(row))
    print(f"wall time {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
