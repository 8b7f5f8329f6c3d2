"""The driver's view of a grid of runs: a progress line per tenth of each run and per finished
run, each with the run's ETA and the grid's, and what went wrong (rows that could not be
written, trials that crashed, runs Ray gave up on).

ETAs come from measured speed: a run's from its own steps per second of wall time between
reports (evaluations included); a run not started yet is assumed as fast as the measured
runs of the same algorithm and network (else all measured runs); the grid's ETA is the
remaining run-seconds over the number of runs that go at once.
"""
from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import RunConfig


@dataclasses.dataclass
class GridOutcome:
    """What the driver saw of a grid: runs whose rows could not be written (one line each,
    naming the path and the cause), trials that crashed (their Tune error files) and the runs
    of those trials ({run_id: last line of the error}) that the grid records as failed."""

    write_errors: list[str] = dataclasses.field(default_factory=list)
    crashed: list[str] = dataclasses.field(default_factory=list)
    lost: dict[str, str] = dataclasses.field(default_factory=dict)


def duration(seconds: float | None) -> str:
    """'?' / '45s' / '12m' / '3h05m' / '2d04h'."""
    if seconds is None:
        return "?"
    s = max(0, int(round(seconds)))
    if s < 100:
        return f"{s}s"
    if s < 6000:
        return f"{s // 60}m"
    if s < 48 * 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


class EtaModel:
    """Remaining time of each run and of the grid, from the speeds measured so far."""

    def __init__(self, configs: list[RunConfig], slots: int) -> None:
        self.steps = {c.run_id: c.steps for c in configs}
        self.kind = {c.run_id: (c.algorithm, c.network) for c in configs}
        self.slots = max(1, slots)
        self.done_steps: dict[str, int] = {}
        self.rate: dict[str, float] = {}  # steps per wall second, evaluations included
        self._last: dict[str, tuple[float, int]] = {}
        self.finished: set[str] = set()

    def update(self, run_id: str, steps_done: int, now: float | None = None) -> None:
        now = time.perf_counter() if now is None else now
        last = self._last.get(run_id)
        if last is not None and steps_done > last[1] and now > last[0]:
            r = (steps_done - last[1]) / (now - last[0])
            self.rate[run_id] = r if run_id not in self.rate else 0.5 * (self.rate[run_id] + r)
        self._last[run_id] = (now, steps_done)
        self.done_steps[run_id] = steps_done

    def start(self, run_id: str, now: float | None = None) -> None:
        """The trial (re)started: its speed is measured from here on."""
        self._last.pop(run_id, None)
        self._last[run_id] = (time.perf_counter() if now is None else now, self.done_steps.get(run_id, 0))

    def finish(self, run_id: str) -> None:
        self.finished.add(run_id)

    def _rate_for(self, run_id: str) -> float | None:
        if run_id in self.rate:
            return self.rate[run_id]
        same = [r for k, r in self.rate.items() if self.kind[k] == self.kind[run_id]]
        pool = same or list(self.rate.values())
        return sum(pool) / len(pool) if pool else None

    def run_eta(self, run_id: str) -> float | None:
        rate = self._rate_for(run_id)
        if rate is None or rate <= 0:
            return None
        return (self.steps[run_id] - self.done_steps.get(run_id, 0)) / rate

    def grid_eta(self) -> float | None:
        left = [r for r in self.steps if r not in self.finished]
        if not left:
            return 0.0
        etas = [self.run_eta(r) for r in left]
        if any(e is None for e in etas):
            return None
        return sum(etas) / min(self.slots, len(left))


def make_progress_callback(configs: list[RunConfig], outcome: GridOutcome, slots: int = 1):
    from ray.tune import Callback

    total = len(configs)

    class Progress(Callback):
        """A line per tenth of each run's budget and per finished run (Tune's own output is off)."""

        def __init__(self) -> None:
            self.done = 0
            self.started = time.perf_counter()
            self.eta = EtaModel(configs, slots)
            self.printed: dict[str, int] = {}

        def _name(self, trial) -> str:
            r = trial.config["job"]["run"]
            return f"{r['dataset']}/{r['n_labels']} {r['algorithm']} seed={r['seed']}"

        @staticmethod
        def _run_id(trial) -> str:
            from .config import RunConfig

            return RunConfig.from_dict(trial.config["job"]["run"]).run_id

        def _head(self) -> str:
            return (f"[{self.done}/{total} done, {time.perf_counter() - self.started:6.0f}s, "
                    f"ETA {duration(self.eta.grid_eta())}]")

        def on_trial_start(self, iteration, trials, trial, **info):
            self.eta.start(self._run_id(trial))

        def on_trial_recover(self, iteration, trials, trial, **info):
            print(f"{self._head()} {self._name(trial)}: trial lost (worker or node); restarting it from its last "
                  f"checkpoint (failure {trial.num_failures} of at most {self._max(trial)})",
                  flush=True)

        @staticmethod
        def _max(trial) -> int:
            return trial.config["job"]["env"].get("max_failures", 0)

        def on_trial_result(self, iteration, trials, trial, result, **info):
            if result.get("done"):
                return
            rid = self._run_id(trial)
            steps = trial.config["job"]["run"]["steps"]
            done_steps = int(result.get("steps_done", 0))
            self.eta.update(rid, done_steps)
            # runs evaluate 40+ times: print a run's progress each tenth of its budget, not each evaluation
            tenth = 10 * done_steps // max(1, steps)
            if tenth <= self.printed.get(trial.trial_id, -1):
                return
            self.printed[trial.trial_id] = tenth
            err = result.get("val_error_ema", float("nan"))
            print(f"{self._head()} {self._name(trial)}: step {done_steps}/{steps} val "
                  f"{metric_label(trial.config['job']['run']['dataset'])} {100 * err:.1f}% "
                  f"({result.get('steps_per_s', 0):.1f} steps/s, ETA {duration(self.eta.run_eta(rid))})", flush=True)

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.done += 1
            self.eta.finish(self._run_id(trial))
            last = trial.last_result or {}
            note = f"; {last['note']}" if last.get("note") else ""
            if last.get("write_error"):
                outcome.write_errors.append(last["write_error"])
                print(f"{self._head()} {self._name(trial)}: finished ({last.get('status', '?')}{note}) but NOT "
                      f"recorded: {last['write_error']}", flush=True)
                return
            print(f"{self._head()} {self._name(trial)}: finished ({last.get('status', '?')}{note})", flush=True)

        def on_trial_error(self, iteration, trials, trial, **info):
            self.done += 1
            rid = self._run_id(trial)
            self.eta.finish(rid)
            outcome.crashed.append(trial.error_file or self._name(trial))
            try:
                text = trial.get_error()
            except Exception:  # the error file is unreadable: the error file's name still says where
                text = None
            lines = [ln.strip() for ln in str(text or "").splitlines() if ln.strip()]
            outcome.lost[rid] = lines[-1][:300] if lines else "the trial crashed"
            print(f"{self._head()} {self._name(trial)}: trial crashed after {trial.num_failures} restarts; recorded as "
                  f"failed ({trial.error_file or 'no log'})", flush=True)

    return Progress()


def metric_label(dataset: str) -> str:
    """How a progress line names the dataset's metric: ``err`` (classification), ``NME/IOD`` (landmarks)."""
    from .run_row import metric_of

    metric = metric_of(dataset)
    return "err" if metric == "error" else "NME/IOD" if metric == "nme_iod" else metric
