"""What a search trial may report to Tune: validation metrics, progress, the objective."""
from __future__ import annotations

import math

from ..config import RunConfig

OBJECTIVE = "objective_val_error"
# ASHA's clock: reported at intermediate evaluations only, so ASHA never stops a trial at its
# last evaluation, before the trial has written its run row.
ASHA_TIME = "asha_steps"
_SAFE_KEYS = {"steps_done", "steps_per_s", "loss", "run_status", ASHA_TIME, OBJECTIVE}


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


def final_objective(run_row: dict, last_val: float | None) -> float:
    """Objective of a trial that reached its budget: the EMA weights' validation error at the
    last evaluation, as at every intermediate report (so trials stopped early and finished
    ones are compared on the same quantity); 1.0 (every answer wrong) for a failed or
    diverged run, so TPE learns to avoid the region."""
    ok = run_row.get("status") == "ok" and last_val is not None and math.isfinite(last_val)
    return float(last_val) if ok else 1.0


def last_val_error(eval_rows: list[dict]) -> float | None:
    """EMA validation error at the last evaluation of a run's eval rows (None if there is none)."""
    val = [r for r in eval_rows if r["split"] == "val" and r["model"] == "ema"]
    return float(max(val, key=lambda r: r["step"])["error"]) if val else None


def final_report(run_row: dict, last_val: float | None) -> dict:
    """A trial's last report, from its run row and last validation error."""
    metrics = {"steps_done": int(run_row["steps_done"]), "run_status": run_row["status"],
               "val_error_final": float(run_row["val_error"])}
    return tune_metrics(metrics, objective=final_objective(run_row, last_val))


def search_final_metrics(outcome) -> dict:
    """:func:`final_report` of a finished run's outcome (``bench.ray_launch.run_trial``'s ``final``)."""
    return final_report(outcome.run_row, last_val_error(outcome.eval_rows))


class SearchReporter:
    """Wraps the engine's Tune/Train reporter: filtered metrics, ASHA clock, objective."""

    def __init__(self, inner, steps: int) -> None:
        self.inner, self.steps = inner, steps
        self.last_val_error: float | None = None

    def report(self, metrics: dict) -> None:
        out = tune_metrics(metrics)
        self.last_val_error = out[OBJECTIVE]
        if metrics.get("steps_done", 0) < self.steps:
            out[ASHA_TIME] = metrics["steps_done"]
        self.inner.report(out)


def search_reporter(inner, cfg: RunConfig) -> SearchReporter:
    """``bench.ray_launch.run_trial``'s ``wrap`` for search trials."""
    return SearchReporter(inner, cfg.steps)
