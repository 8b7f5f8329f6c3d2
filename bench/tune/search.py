"""The search itself: its spec (hashed into the search id), the planned base run, the
searcher (seeded TPE), the scheduler (ASHA) and the Tune run."""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os

from algorithms import ConfigError

from ..cli_errors import UsageError
from ..config import RunEnv, identity_hparams
from ..planner import PlanRequest, plan_runs
from ..ray_launch import trial_resources
from .metrics import ASHA_TIME, OBJECTIVE
from .progress import SearchProgress
from .trial import search_trial


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
        data = dataclasses.asdict(self)
        data["base_run"] = dict(data["base_run"], hparams=identity_hparams(self.algorithm, data["base_run"]["hparams"]))
        blob = json.dumps(data, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def spec_from_args(args: argparse.Namespace) -> tuple[SearchSpec, RunEnv]:
    """Validate the search's command line and build its spec; UsageError on bad input."""
    import datasets
    import tune_spaces

    from ..suites import RECIPES

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
    if args.dataset not in datasets.list_datasets():
        raise UsageError(f"unknown dataset {args.dataset!r} (valid: {', '.join(datasets.list_datasets())})")
    labels = args.labels if args.labels is not None else RECIPES[args.dataset].labels[0]
    configs, env = plan_runs(PlanRequest(
        suite="quick", algorithms=(args.algorithm,), datasets=(args.dataset,), labels=(labels,), seeds=1,
        split_seed=args.split_seed, preset=args.preset, steps=args.steps, workers=args.workers,
        gpus_per_worker=args.gpus_per_worker, results_dir=args.results_dir, data_root=args.data_root))
    base = configs[0].resolved()
    # The searched values are the trial's own: keep them out of the base so the id depends on the space only.
    hp = {k: v for k, v in base.hparams.items() if k not in space.params}
    base_run = dict(dataclasses.replace(base, hparams=hp, suite="").to_dict(), optim=dataclasses.asdict(base.optim))
    space_json = {n: [p.low, p.high, p.scale, p.integer] for n, p in space.params.items()}
    spec = SearchSpec(args.algorithm, base_run, space_json, args.trials, args.seed, args.scheduler)
    return spec, env


def load_spec(results_dir: str, search_id: str) -> SearchSpec:
    """The spec of search ``search_id`` as written when it started; UsageError if there is none."""
    path = os.path.join(os.path.abspath(results_dir), "tune", search_id, "spec.json")
    if not os.path.isfile(path):
        raise UsageError(f"no search {search_id!r} under {os.path.abspath(results_dir)} (no {path})")
    with open(path) as f:
        data = json.load(f)
    return SearchSpec(**data)


def space_of(spec: SearchSpec):
    """The ``tune_spaces.Space`` a spec searches."""
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


def check_resources(workers: int, cpus: float, where: str, gpus_per_worker: float = 0.0, gpus: float = 0.0) -> int:
    """Trials that can run at once; UsageError if one trial needs more CPUs (or GPUs) than exist.

    A multi-worker trial's driver holds no CPU (it only waits for its workers): the
    workers get every CPU the trial needs, so W workers on exactly W CPUs cannot deadlock.
    """
    if workers > cpus:
        raise UsageError(f"--workers {workers}: each trial needs {workers} CPUs but {where} has {cpus:g}")
    slots = max(1, int(cpus // workers))
    if gpus_per_worker > 0:
        need = workers * gpus_per_worker
        if need > gpus:
            raise UsageError(f"--workers {workers} x --gpus-per-worker {gpus_per_worker:g}: each trial needs {need:g} "
                             f"GPUs but {where} has {gpus:g}")
        slots = min(slots, int(gpus // need))
    return slots


def trial_dirname(trial) -> str:
    return f"trial_{trial.trial_id}"


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
    resources = trial_resources(spec.base_run["workers"], env.gpus_per_worker)
    trainable = tune.with_resources(tune.with_parameters(search_trial, base=base), resources)
    import logging

    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    logging.getLogger("ray.tune.search.optuna.optuna_search").setLevel(logging.ERROR)
    if tune.Tuner.can_restore(exp_path):
        print(f"bench.tune: resuming search {search_id} from {exp_path}", flush=True)
        tuner = tune.Tuner.restore(exp_path, trainable=trainable, resume_unfinished=True, resume_errored=False)
    else:
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=make_searcher(space_of(spec), spec.seed, spec.trials),
                scheduler=make_scheduler(spec.scheduler, spec.base_run["steps"], spec.base_run["eval_every"]),
                num_samples=spec.trials, max_concurrent_trials=concurrency,
                trial_dirname_creator=trial_dirname),
            run_config=tune.RunConfig(
                name=search_id, storage_path=tune_root, verbose=0,
                callbacks=[SearchProgress(search_id, list(spec.space), spec.base_run["steps"], spec.trials,
                                          env.results_dir, base)],
                failure_config=tune.FailureConfig(max_failures=env.max_failures)),
        )
    tuner.fit()
    trials = SearchStore(env.results_dir).load_trials([search_id])
    return len(trials) >= spec.trials


