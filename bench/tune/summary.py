"""A finished search's result: the best trial, its final re-runs, the searches-table row."""
from __future__ import annotations

import datetime as _dt
import json
import math

from ..config import RunConfig, RunEnv
from .progress import fmt
from .search import SearchSpec, space_of


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
        "paper_hps": space_of(spec).paper_hps if space_of(spec).paper_hps is not None else -1,
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
        "best parameters: " + ", ".join(f"{k}={fmt(v)}" for k, v in params.items()),
        f"validation error (objective, best trial): {100 * row['best_val_error']:.2f}%",
        f"test error over {row['final_seeds']} seeds: "
        + ("n/a" if not math.isfinite(te) else f"{100 * te:.2f}%" + ("" if not math.isfinite(sd) else f" +- {100 * sd:.2f}%")),
        f"cost: {row['n_trials_finished']} trials ({row['n_stopped_early']} stopped early, {row['n_errored']} errored), "
        f"{row['trial_compute_s']:.0f} CPU-s in trials + {row['final_compute_s']:.0f} CPU-s in final runs",
        f"use it: python -m bench.run --config-from {row['search_id']} --datasets {row['dataset']} "
        f"--algorithms {row['algorithm']}",
    ]
    return "\n".join(lines)
