"""The trials table of a search, written as trials finish, and one progress line per trial."""
from __future__ import annotations

import datetime as _dt
import json
import math
import time
from typing import Any

from ray.tune import Callback

from .metrics import OBJECTIVE
from .trial import trial_run_config


def trial_row(search_id: str, trial, names: list[str], keys: set[str], errored: bool, run_id: str) -> dict:
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
        self.rows = {r["trial_id"]: {k: v for k, v in r.items() if not is_missing(v)} for r in old.to_dict("records")}
        self.keys = {t: set(filter(None, r.get("reported_metrics", "").split(","))) for t, r in self.rows.items()}
        self.started = time.perf_counter()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.keys.setdefault(trial.trial_id, set()).update(k for k in result if k != "config")

    def _finish(self, trial, errored: bool) -> None:
        from results.trials import SearchStore

        run_id = trial_run_config({n: trial.config[n] for n in self.names}, self.base).run_id
        row = trial_row(self.search_id, trial, self.names, self.keys.get(trial.trial_id, set()), errored, run_id)
        if row["status"] == "stopped_early":  # ASHA stopped it: it never resumes, its checkpoint is spent
            from ..checkpoint import RunCheckpoints

            RunCheckpoints(self.root, run_id).clear()
        self.rows[row["trial_id"]] = row
        SearchStore(self.root).write_trials(self.search_id, self.rows.values())
        params = ", ".join(f"{n}={fmt(trial.config[n])}" for n in self.names)
        val = row["val_error"]
        print(f"[{len(self.rows)}/{self.trials} trials, {time.perf_counter() - self.started:5.0f}s] {params}: "
              f"{row['status']} at step {row['steps_reached']}/{self.steps}, val err "
              f"{'n/a' if val is None else f'{100 * val:.1f}%'}", flush=True)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._finish(trial, errored=False)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._finish(trial, errored=True)


def is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
