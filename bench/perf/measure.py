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


def measure(spec: RowSpec, opts: Options, cls: type | None = None) -> dict[str, Any]:
    """Build ``spec`` with the engine's run builder and measure it. ``cls``: the algorithm class
    when the registry does not know it (a test's dummy rule). Returns a dict with ms (list of
    per-step milliseconds), state_bytes, step_bytes, holdout (hold-out batch size)."""
    device = torch.device(opts.device)
    torch.set_num_threads(opts.threads)
    torch.set_flush_denormal(True)
    cfg = RunConfig(dataset=opts.dataset, algorithm=spec.algorithm, network=opts.network, n_labels=opts.n_labels,
                    steps=HORIZON, seed=opts.seed, batch_labeled=opts.batch_labeled, batch_unlabeled=opts.batch_unlabeled,
                    hparams=dict(spec.hparams))
    run = build_run(cfg, RunEnv(results_dir=""), device=device, algorithm=cls or get_algorithm(spec.algorithm))
    model, algo, stepper = run.model, run.algo, run.stepper
    cuda = device.type == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    step = HORIZON // 2
    ms: list[float] = []
    step_peak = 0
    for i in range(opts.warmup + opts.steps):
        batch = run.next_batch()
        model.train()
        sync()
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
            start_bytes = torch.cuda.memory_allocated(device)
        t0 = time.perf_counter()
        algo.train_step(batch, step, stepper)
        sync()
        elapsed = time.perf_counter() - t0
        if cuda:
            step_peak = max(step_peak, torch.cuda.max_memory_allocated(device) - start_bytes)
        run.eval_ema.update(model)
        step += 1
        if i >= opts.warmup:
            ms.append(1000.0 * elapsed)
    if not cuda:
        model.train()
        step_peak = cpu_step_peak(lambda: algo.train_step(run.next_batch(), step, stepper))
    data_tensors = [run.x_l, run.y_l, run.x_u, run.x_h, run.y_h, run.x_val, run.y_val, run.x_test, run.y_test]
    state = storage_bytes([model, run.optimizer, algo, run.eval_ema], data_tensors)
    return {"ms": ms, "state_bytes": state, "step_bytes": int(step_peak), "holdout": run.holdout.size}
