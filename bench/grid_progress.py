"""The driver's view of a grid of runs: a progress line per tenth of each run and per finished run,
and what went wrong (rows that could not be written, trials that crashed)."""
from __future__ import annotations

import dataclasses
import time


@dataclasses.dataclass
class GridOutcome:
    """What the driver saw of a grid: runs whose rows could not be written (one line each,
    naming the path and the cause) and trials that crashed (their Tune error files)."""

    write_errors: list[str] = dataclasses.field(default_factory=list)
    crashed: list[str] = dataclasses.field(default_factory=list)


def make_progress_callback(total: int, outcome: GridOutcome):
    from ray.tune import Callback

    class Progress(Callback):
        """A line per tenth of each run's budget and per finished run (Tune's own output is off)."""

        def __init__(self) -> None:
            self.done = 0
            self.started = time.perf_counter()
            self.printed: dict[str, int] = {}

        def _name(self, trial) -> str:
            r = trial.config["job"]["run"]
            return f"{r['dataset']}/{r['n_labels']} {r['algorithm']} seed={r['seed']}"

        def _head(self) -> str:
            return f"[{self.done}/{total} done, {time.perf_counter() - self.started:6.0f}s]"

        def on_trial_result(self, iteration, trials, trial, result, **info):
            if result.get("done"):
                return
            steps = trial.config["job"]["run"]["steps"]
            # runs evaluate 40+ times: print a run's progress each tenth of its budget, not each evaluation
            tenth = 10 * result.get("steps_done", 0) // max(1, steps)
            if tenth <= self.printed.get(trial.trial_id, -1):
                return
            self.printed[trial.trial_id] = tenth
            err = result.get("val_error_ema", float("nan"))
            print(f"{self._head()} {self._name(trial)}: step {result.get('steps_done', 0)}/{steps} val err "
                  f"{100 * err:.1f}% ({result.get('steps_per_s', 0):.1f} steps/s)", flush=True)

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.done += 1
            last = trial.last_result or {}
            if last.get("write_error"):
                outcome.write_errors.append(last["write_error"])
                print(f"{self._head()} {self._name(trial)}: finished ({last.get('status', '?')}) but NOT recorded: "
                      f"{last['write_error']}", flush=True)
                return
            elapsed = time.perf_counter() - self.started
            # runs differ in cost: a rough figure from the mean so far, not a promise
            eta = f", about {elapsed / self.done * (total - self.done):.0f}s to go" if self.done < total else ""
            print(f"{self._head()} {self._name(trial)}: finished ({last.get('status', '?')}){eta}", flush=True)

        def on_trial_error(self, iteration, trials, trial, **info):
            self.done += 1
            outcome.crashed.append(trial.error_file or self._name(trial))
            print(f"{self._head()} {self._name(trial)}: trial crashed ({trial.error_file or 'no log'})", flush=True)

    return Progress()
