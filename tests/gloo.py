"""The one 2-process gloo harness of the test suite: run a function on W spawned workers that
share a ``torch.distributed`` process group, and collect what each returns.

``fn(comm, *args)`` runs on every worker with ``comm`` the worker's communicator
(:func:`algorithms.make_comm`); it must be a module-level function (spawn pickles it by name)
and return something picklable. Tensors in the result are turned into numpy arrays on the
worker (tensors would travel through shared memory that dies with the worker process);
:func:`as_tensors` turns them back. ``meanwhile()`` runs in the parent while the workers
start and compute (e.g. the 1-worker reference runs), so process start-up is paid once.
"""
from __future__ import annotations

import os
import queue as queue_mod
import socket
import traceback
from typing import Any, Callable

import numpy as np
import pytest
import torch

WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def to_numpy(obj: Any) -> Any:
    """Tensors (anywhere in dicts, lists, tuples) -> numpy arrays (0-dim tensors -> floats)."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu()
        return float(t) if t.dim() == 0 else t.numpy().copy()
    if isinstance(obj, dict):
        return {k: to_numpy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_numpy(v) for v in obj)
    return obj


def as_tensors(obj: Any) -> Any:
    """The inverse of :func:`to_numpy` for arrays: numpy arrays -> tensors."""
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj)
    if isinstance(obj, dict):
        return {k: as_tensors(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(as_tensors(v) for v in obj)
    return obj


def _child(rank: int, world: int, port: int, fn: Callable, args: tuple, out) -> None:
    try:
        import torch.distributed as dist

        from algorithms import make_comm

        torch.set_num_threads(1)
        os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
        dist.init_process_group("gloo", rank=rank, world_size=world)
        try:
            comm = make_comm()
            assert (comm.rank, comm.world_size) == (rank, world)
            out.put((rank, to_numpy(fn(comm, *args)), ""))
        finally:
            dist.destroy_process_group()
    except BaseException:  # report instead of leaving the parent waiting
        out.put((rank, None, traceback.format_exc()))


def run_workers(fn: Callable, *args: Any, meanwhile: Callable[[], Any] | None = None, world: int = WORLD,
                timeout: float = 240.0) -> tuple[list[Any], Any]:
    """([result of rank 0, rank 1, ...], meanwhile's result); a worker's crash or a timeout
    fails the calling test with the worker's traceback."""
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_child, args=(r, world, port, fn, args, out), daemon=True) for r in range(world)]
    for p in procs:
        p.start()
    got: dict[int, Any] = {}
    try:
        extra = meanwhile() if meanwhile is not None else None
        while len(got) < world:
            try:
                rank, result, err = out.get(timeout=timeout)
            except queue_mod.Empty:
                pytest.fail(f"gloo workers timed out; got ranks {sorted(got)}")
            if err:
                pytest.fail(f"worker {rank} crashed:\n{err}")
            got[rank] = result
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    return [got[r] for r in range(world)], extra


def train_runs(comm, configs: list, results_dir: str) -> dict:
    """Worker body for engine runs: {key: (status, error message, final model state)} of
    ``train_run`` for each ``(key, RunConfig)`` in ``configs``."""
    from bench.config import RunEnv
    from bench.engine import train_run

    out = {}
    for key, cfg in configs:
        o = train_run(cfg, RunEnv(results_dir=results_dir), comm=comm, write=False)
        out[key] = (o.status, o.run_row["error_message"], o.model_state or {})
    return out


def assert_workers_equal_one(parallel: list[dict], single: dict, rtol: float = 1e-4, atol: float = 1e-5) -> None:
    """Engine runs: every worker holds the same parameters, bit for bit, equal to the 1-worker
    run (``single``: {key: RunOutcome}) to float tolerance."""
    for key, ref in single.items():
        states = []
        for rank, res in enumerate(parallel):
            status, message, state = res[key]
            assert status == "ok", f"{key} rank {rank}: {message}"
            assert state, f"{key}: no model state returned"
            states.append(state)
        assert ref.status == "ok", ref.run_row["error_message"]
        assert ref.model_state.keys() == states[0].keys()
        for k, v in ref.model_state.items():
            for other in states[1:]:
                np.testing.assert_array_equal(states[0][k], other[k], err_msg=f"{key} {k}")
            np.testing.assert_allclose(states[0][k], v.numpy(), rtol=rtol, atol=atol, err_msg=f"{key} {k}")
