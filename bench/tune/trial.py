"""One search trial: the proposed values on the search's base run, launched like every other
trial (``bench.ray_launch.run_trial``: a plain Tune trial, or a Ray Train worker group for
multi-worker runs, on CPUs or GPUs), with the search's reporter filter."""
from __future__ import annotations

import dataclasses
from typing import Any

from ..config import RunConfig, RunEnv
from .metrics import final_report, last_val_error, search_final_metrics, search_reporter


def log_event(path: str, *fields: Any) -> None:
    """One line per training start / end / reuse: how tests and users count trainings across resumes."""
    with open(path, "a") as f:
        f.write(" ".join(str(x) for x in fields) + "\n")


def trial_run_config(config: dict, base: dict) -> RunConfig:
    """The run config of a trial: ``base["run"]`` with the proposed values ``config``."""
    run = dict(base["run"])
    run["hparams"] = {**run["hparams"], **config}
    return RunConfig.from_dict(run)


def search_trial(config: dict, base: dict) -> None:
    """A Tune trial: train ``base``'s run config with the proposed hyperparameters ``config``.

    A run already finished in the store (a trial re-run after a hard kill of the driver)
    reports its stored result instead of training again.
    """
    from ray import tune

    from results import ResultStore

    from ..ray_launch import run_trial

    cfg, env = trial_run_config(config, base), RunEnv(**base["env"])
    trial_id = tune.get_context().get_trial_id()
    store = ResultStore(env.results_dir)
    done = store.load_runs([cfg.run_id])
    if len(done) and done.iloc[0]["status"] in ("ok", "diverged"):
        log_event(base["log"], "reuse", trial_id, cfg.run_id)
        evals = store.load_evals([cfg.run_id])
        tune.report(final_report(done.iloc[0].to_dict(), last_val_error(evals.to_dict("records"))))
        return
    from ..checkpoint import RunCheckpoints

    resuming = (RunCheckpoints(env.results_dir, cfg.run_id).manifest() or {}).get("step", 0) > 0
    log_event(base["log"], "start", trial_id, cfg.run_id, "resume" if resuming else "fresh")
    job = {"run": dict(cfg.to_dict(), optim=dataclasses.asdict(cfg.optim)), "env": base["env"]}
    run_trial(job, wrap=search_reporter, final=search_final_metrics,
              on_outcome=lambda o: log_event(base["log"], "end", trial_id, cfg.run_id, o.status),
              train_name=f"train-{trial_id}", train_storage=f"{base['tune_dir']}/train")
    if cfg.workers > 1:
        log_event(base["log"], "end", trial_id, cfg.run_id, "train")
