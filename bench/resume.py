"""A run's attempts: resume from its last checkpoint, checkpoint every few minutes of
training, and the attempt columns of its row.

An attempt is one call of ``bench.engine.train_run`` for a run: the first, a retry after a
lost worker or node (Ray restarts the trial or the worker group), or a re-run of a killed
command. Each attempt starts from the run's checkpoint in the results store
(``bench.checkpoint``) when one exists for the same run id, code version and worker count;
otherwise from step 0. Decisions that a failure on one worker could split (resume or not,
a checkpoint written or not) are agreed by every worker through one small all-reduce, so a
multi-worker run never waits forever on a worker that took the other branch.

Wall time: ``wall_time_s`` sums every attempt, each interrupted one counted up to its last
checkpoint (what it trained after that is redone, and counted, by the next attempt);
``last_attempt_wall_time_s`` is the last attempt alone.
"""
from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

import torch

from results import ResultsDirError, write_error_message

from .checkpoint import CheckpointError, RunCheckpoints, code_version
from .config import RunConfig, RunEnv

if TYPE_CHECKING:
    from algorithms import Comm

    from .engine import Run


class Resume:
    """Checkpoint bookkeeping of one attempt of one run, on one worker."""

    def __init__(self, cfg: RunConfig, env: RunEnv, comm: Comm) -> None:
        self.cfg, self.env, self.comm = cfg, env, comm
        self.ckpts = RunCheckpoints(env.results_dir, cfg.run_id, comm.rank, comm.world_size)
        self.every_s = 60.0 * env.checkpoint_every_min
        self.resumed_from_step = 0
        self.attempts = 1
        self.wall_before = 0.0  # earlier attempts, each up to its last checkpoint
        self.note = ""
        self.started = time.perf_counter()

    # ------------------------------------------------------------------ agreement

    def _agree(self, values: list[float]) -> list[float]:
        """Element-wise sum of ``values`` over the workers (rank 0's values when the others give 0)."""
        if self.comm.world_size == 1:
            return values
        return [float(v) for v in self.comm.all_reduce_sum(torch.tensor(values, dtype=torch.float64))]

    # ------------------------------------------------------------------ start

    def _decide(self) -> tuple[int, int, float]:
        """Rank 0: (step to resume from, attempts so far, wall time so far) from the manifest."""
        m = self.ckpts.manifest()
        if m is None:
            return 0, 0, 0.0
        where = self.ckpts.show()
        if m.get("run_id") != self.cfg.run_id:
            self.note = f"ignored the checkpoint in {where}: it belongs to run {m.get('run_id')!r}"
        elif m.get("code_version") != code_version():
            self.note = (f"ignored the checkpoint at step {m.get('step')} in {where}: it was written by other code "
                         f"(code version {m.get('code_version')}, now {code_version()}); training from step 0")
        elif m.get("world_size") != self.comm.world_size:
            self.note = f"ignored the checkpoint in {where}: it was written by {m.get('world_size')} workers"
        elif not (isinstance(m.get("step"), int) and 0 <= m["step"] <= self.cfg.steps):
            self.note = f"ignored the checkpoint in {where}: its step {m.get('step')!r} is not in 0..{self.cfg.steps}"
        else:
            return m["step"], int(m.get("attempts", 0)), float(m.get("wall_time_s", 0.0))
        return 0, 0, 0.0

    def start(self) -> dict | None:
        """This worker's state to resume from, or None for a fresh start. Records the attempt
        in the manifest first, so attempts that die before their first checkpoint count too.
        CheckpointError when a worker's checkpoint is refused; ResultsDirError when the
        manifest cannot be written."""
        step, attempts, wall = self._decide() if self.comm.rank == 0 else (0, 0, 0.0)
        write_failed = ""
        if self.comm.rank == 0:
            files = [self.ckpts.file_name(step, r) for r in range(self.comm.world_size)] if step else []
            try:
                self.ckpts.write_manifest(self._manifest(step, files, attempts + 1, wall))
            except OSError as e:
                write_failed = write_error_message(f"could not save a checkpoint of run {self.cfg.run_id}", e)
        step_f, attempts_f, wall_f, failed = self._agree([step, attempts, wall, 1.0 if write_failed else 0.0])
        if failed:
            raise ResultsDirError(write_failed or f"could not save a checkpoint of run {self.cfg.run_id} "
                                                  f"(rank 0's write failed)")
        self.resumed_from_step, self.attempts, self.wall_before = int(step_f), int(attempts_f) + 1, wall_f
        if self.resumed_from_step == 0:
            return None
        state, refused = None, ""
        try:
            state = self.ckpts.load(self.resumed_from_step)
        except CheckpointError as e:
            refused = str(e)
        if self._agree([1.0 if refused else 0.0])[0]:
            raise CheckpointError((refused or "another worker's checkpoint was refused") +
                                  f"; delete {self.ckpts.show()} to train run {self.cfg.run_id} afresh")
        done = self.resumed_from_step == self.cfg.steps
        self.note = (f"rows rewritten from its final checkpoint (step {self.resumed_from_step}; no training needed)"
                     if done else f"resumed from step {self.resumed_from_step} (attempt {self.attempts})")
        return state

    def _manifest(self, step: int, files: list[str], attempts: int, wall: float) -> dict:
        return {"run_id": self.cfg.run_id, "code_version": code_version(), "world_size": self.comm.world_size,
                "step": step, "steps": self.cfg.steps, "files": files, "attempts": attempts,
                "wall_time_s": wall, "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}

    # ------------------------------------------------------------------ during training

    def next_checkpoint_step(self, step: int, train_seconds: float, planned: int | None = None) -> int | None:
        """The step of the next checkpoint after ``step``: ``planned`` while it is still ahead,
        else ``checkpoint_every_min`` minutes of training ahead at the run's measured speed
        (``train_seconds`` over ``step`` steps); None until a speed is measured (the first
        evaluation decides). Rank 0's answer is every worker's (a collective: called at the start,
        at evaluations and at checkpoints, never in between), so workers save at the same step
        without a collective or a host read in the step loop."""
        if planned is not None and planned > step:
            return planned
        if self.every_s <= 0:
            return step + 1
        if step <= 0 or train_seconds <= 0:
            return None
        k = max(1, math.ceil(self.every_s / (train_seconds / step)))
        return step + int(self._agree([float(k) if self.comm.rank == 0 else 0.0])[0])

    def save(self, run: Run) -> None:
        """Every worker writes its state at ``run.step``; rank 0 then publishes the manifest
        and deletes older states. ResultsDirError on every worker if any write failed."""
        step = run.step
        failed = ""
        try:
            self.ckpts.save(step, run.state_dict())
        except OSError as e:
            failed = write_error_message(f"could not save a checkpoint of run {self.cfg.run_id}", e)
        if self._agree([1.0 if failed else 0.0])[0] == 0 and self.comm.rank == 0:
            files = [self.ckpts.file_name(step, r) for r in range(self.comm.world_size)]
            try:
                self.ckpts.write_manifest(self._manifest(step, files, self.attempts, self.elapsed()))
                self.ckpts.prune(set(files))
            except OSError as e:
                failed = write_error_message(f"could not save a checkpoint of run {self.cfg.run_id}", e)
        if self._agree([1.0 if failed else 0.0])[0]:
            raise ResultsDirError(failed or f"could not save a checkpoint of run {self.cfg.run_id} (another worker's "
                                            f"write failed)")

    # ------------------------------------------------------------------ the row

    def wall(self) -> float:
        """This attempt's wall time so far."""
        return time.perf_counter() - self.started

    def elapsed(self) -> float:
        """Wall time of the run so far, over its attempts."""
        return self.wall_before + self.wall()

    def columns(self) -> dict:
        """The run row's attempt columns."""
        wall = self.wall()
        return {"resumed_from_step": self.resumed_from_step, "attempts": self.attempts,
                "wall_time_s": self.wall_before + wall, "last_attempt_wall_time_s": wall}

    def finish(self, status: str, recorded: bool) -> None:
        """After the run's rows: its checkpoints are spent once a finished run (ok or diverged)
        is recorded, unless ``keep_checkpoints``; a failed run keeps them for its retry."""
        if recorded and status in ("ok", "diverged") and not self.env.keep_checkpoints and self.comm.rank == 0:
            self.ckpts.clear()
