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

Modules, one job each: ``metrics`` (what a trial may report), ``search`` (the spec, searcher,
scheduler and the Tune run), ``trial`` (one trial, launched through ``bench.ray_launch``),
``progress`` (the trials table as trials finish), ``summary`` (the result), ``cli``.
"""
from .cli import build_parser, main
from .metrics import ASHA_TIME, OBJECTIVE, final_objective, last_val_error, tune_metrics
from .search import SearchSpec, check_resources, make_scheduler, make_searcher, startup_trials
from .summary import best_trial, final_configs, format_search, summarize_search

__all__ = ["ASHA_TIME", "OBJECTIVE", "SearchSpec", "best_trial", "build_parser", "check_resources", "final_configs",
           "final_objective", "format_search", "last_val_error", "main", "make_scheduler", "make_searcher",
           "startup_trials", "summarize_search", "tune_metrics"]
