"""Parquet results of benchmark runs: schema, atomic store, summaries."""

from .schema import (
    DIAG_PREFIX,
    EVALS_REQUIRED,
    HP_PREFIX,
    MODELS,
    RUNS_REQUIRED,
    SPLITS,
    STATUSES,
    evals_table,
    run_table,
    to_tables,
)
from .store import ResultsDirError, ResultStore, note, write_error_message
from .summary import final_tables, format_comparisons, format_table, last_k_median, summarize
from .trials import TRIAL_STATUSES, SearchStore

__all__ = [
    "DIAG_PREFIX", "EVALS_REQUIRED", "HP_PREFIX", "MODELS", "RUNS_REQUIRED", "SPLITS", "STATUSES",
    "evals_table", "run_table", "to_tables",
    "ResultsDirError", "ResultStore", "note", "write_error_message",
    "final_tables", "format_comparisons", "format_table", "last_k_median", "summarize",
    "SearchStore", "TRIAL_STATUSES",
]
