"""Stop a run at an evaluation as a hard kill would, and resume it from its checkpoint in the
results store (bench.resume)."""
from __future__ import annotations

import pytest

from bench.checkpoint import RunCheckpoints
from bench.engine import train_run


class Stop(BaseException):
    """Stands for a hard kill: not an Exception, so the engine does not record it."""


class StopAt:
    """A reporter that kills the run at the evaluation of ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def report(self, metrics: dict) -> None:
        if metrics["steps_done"] == self.step:
            raise Stop


def interrupted_then_resumed(cfg, env, stop_at: int, comm=None):
    """The outcome of ``cfg`` killed at the evaluation of ``stop_at``, then run again."""
    with pytest.raises(Stop):
        train_run(cfg, env, reporter=StopAt(stop_at), comm=comm)
    return train_run(cfg, env, comm=comm)


def last_checkpoint(env, run_id: str) -> dict:
    """Rank 0's state in the run's last complete checkpoint."""
    ck = RunCheckpoints(env.results_dir, run_id)
    return ck.load(ck.manifest()["step"])
