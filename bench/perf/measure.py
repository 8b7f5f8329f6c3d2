"""Measuring one row: a run built by the engine's own builder, its training steps timed, the
memory of its state and of one step counted (``bench.perf.memory``)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

from algorithms import get_algorithm

from ..config import RunConfig, RunEnv
from ..engine import build_run
from .floors import floor_timer, memory_floor_step
from .memory import cpu_step_peak, storage_bytes
from .rows import RowSpec

HORIZON = 1000  # nominal run length: schedules see steps HORIZON // 2, HORIZON // 2 + 1, ...


@dataclass(frozen=True)
class Options:
    dataset: str = "digits"
    network: str = "cnn_small"
    n_labels: int = 50
    batch_labeled: int = 32
    batch_unlabeled: int = 96
    steps: int = 20
    warmup: int = 5
    device: str = "cpu"
    threads: int = 1
    seed: int = 0


class RowRun:
    """One row's run, built with the engine's run builder, stepped one timed step at a time."""

    def __init__(self, spec: RowSpec, opts: Options, cls: type | None = None) -> None:
        self.device = torch.device(opts.device)
        cfg = RunConfig(dataset=opts.dataset, algorithm=spec.algorithm, network=opts.network, n_labels=opts.n_labels,
                        steps=HORIZON, seed=opts.seed, batch_labeled=opts.batch_labeled,
                        batch_unlabeled=opts.batch_unlabeled, hparams=dict(spec.hparams))
        self.run = build_run(cfg, RunEnv(results_dir=""), device=self.device,
                             algorithm=cls or get_algorithm(spec.algorithm))
        self.cuda = self.device.type == "cuda"
        self.step = HORIZON // 2
        self.step_peak = 0

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def timed_step(self) -> float:
        """One training step; its milliseconds (device work included: synchronised on a GPU)."""
        run = self.run
        batch = run.next_batch()
        run.model.train()
        self.sync()
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
            start_bytes = torch.cuda.memory_allocated(self.device)
        t0 = time.perf_counter()
        run.algo.train_step(batch, self.step, run.stepper)
        self.sync()
        elapsed = time.perf_counter() - t0
        if self.cuda:
            self.step_peak = max(self.step_peak, torch.cuda.max_memory_allocated(self.device) - start_bytes)
        run.eval_ema.update(run.model)
        self.step += 1
        return 1000.0 * elapsed

    def step_peak_of(self, fn) -> int:
        """Peak live tensor bytes during ``fn()`` above those at its start (CPU: profiled twice,
        :func:`cpu_step_peak`; GPU: the caching allocator's peak over one call)."""
        if not self.cuda:
            return cpu_step_peak(fn)
        self.sync()
        torch.cuda.reset_peak_memory_stats(self.device)
        start_bytes = torch.cuda.memory_allocated(self.device)
        fn()
        self.sync()
        return int(torch.cuda.max_memory_allocated(self.device) - start_bytes)

    def memory_floor(self, opts: Options) -> int | None:
        """The step bytes of the row's memory floor (``bench.perf.floors.memory_floor_step``), or
        None where it has none. Run after :meth:`memory`: it steps the run's state."""
        fn = memory_floor_step(self.run, opts, self.step)
        if fn is None:
            return None
        self.run.model.train()
        return self.step_peak_of(fn)

    def memory(self) -> dict[str, int]:
        """state_bytes and step_bytes (CPU: two extra profiled steps; GPU: the timed steps' peak)."""
        run = self.run
        step_peak = self.step_peak
        if not self.cuda:
            run.model.train()
            step_peak = cpu_step_peak(lambda: run.algo.train_step(run.next_batch(), self.step, run.stepper))
        data_tensors = [run.x_l, run.y_l, run.x_u, run.x_h, run.y_h, run.x_val, run.y_val, run.x_test, run.y_test]
        state = storage_bytes([run.model, run.optimizer, run.algo, run.eval_ema], data_tensors)
        return {"state_bytes": state, "step_bytes": int(step_peak), "holdout": run.holdout.size}


def _setup(opts: Options) -> None:
    torch.set_num_threads(opts.threads)
    torch.set_flush_denormal(True)


def measure(spec: RowSpec, opts: Options, cls: type | None = None) -> dict[str, Any]:
    """Build ``spec`` with the engine's run builder and measure it alone. ``cls``: the algorithm
    class when the registry does not know it (a test's dummy rule). Returns a dict with ms (list
    of per-step milliseconds), state_bytes, step_bytes, holdout (hold-out batch size)."""
    _setup(opts)
    row = RowRun(spec, opts, cls)
    for _ in range(opts.warmup):
        row.timed_step()
    ms = [row.timed_step() for _ in range(opts.steps)]
    return {"ms": ms, **row.memory()}


def measure_pair(base: RowSpec, spec: RowSpec, opts: Options, classes: dict[str, type] | None = None) -> dict[str, Any]:
    """Time ``spec`` against its base in this process: both built, ``warmup`` untimed steps of
    each (alternating), then ``steps`` pairs, each a base step then a variant step (ABAB...), so
    that each pair's ratio sees the same machine state. Returns {"base": ..., "variant": ...},
    each as :func:`measure` returns (``ms`` index i of both is pair i); the variant's also has
    floor_ms (``bench.perf.floors``: its rule's floor passes timed alone after each pair, a list
    aligned with ``ms``; None if undeclared) and floor_step_bytes (its memory floor's step
    bytes, :meth:`RowRun.memory_floor`; None where it has none)."""
    _setup(opts)
    classes = classes or {}
    a, b = RowRun(base, opts, classes.get(base.algorithm)), RowRun(spec, opts, classes.get(spec.algorithm))
    floor = floor_timer(b.run, opts, b.sync)
    for _ in range(opts.warmup):
        a.timed_step()
        b.timed_step()
    ms_a, ms_b, ms_f = [], [], []
    for _ in range(opts.steps):
        ms_a.append(a.timed_step())
        ms_b.append(b.timed_step())
        if floor is not None:
            ms_f.append(floor())
    variant = {"ms": ms_b, **b.memory(), "floor_ms": ms_f or None}
    variant["floor_step_bytes"] = b.memory_floor(opts)
    return {"base": {"ms": ms_a, **a.memory()}, "variant": variant}
