"""Memory accounting of a training step (see the package docstring for what is counted)."""
from __future__ import annotations

from typing import Any

import torch


def storage_bytes(roots: list[Any], exclude: list[torch.Tensor]) -> int:
    """Bytes of the distinct tensor storages reachable from ``roots`` through modules,
    optimizers, containers and objects of this project (parameters' ``.grad`` included)."""
    def key(t: torch.Tensor):
        s = t.untyped_storage()
        return (str(s.device), s.data_ptr())

    skip = {key(t) for t in exclude if t is not None and t.numel() > 0}
    seen: set[int] = set()
    storages: dict[tuple, int] = {}
    stack = list(roots)
    while stack:
        o = stack.pop()
        if o is None or id(o) in seen:
            continue
        seen.add(id(o))
        if isinstance(o, torch.Tensor):
            try:
                if o.numel() > 0 and key(o) not in skip:
                    storages[key(o)] = o.untyped_storage().nbytes()
            except (RuntimeError, NotImplementedError):  # sparse/meta tensors have no plain storage
                pass
            if o.grad is not None:
                stack.append(o.grad)
        elif isinstance(o, dict):
            stack.extend(o.values())
        elif isinstance(o, (list, tuple, set, frozenset)):
            stack.extend(o)
        elif isinstance(o, (torch.nn.Module, torch.optim.Optimizer)) or (
                hasattr(o, "__dict__") and type(o).__module__.split(".")[0] in ("algorithms", "bench")):
            stack.extend(vars(o).values())
    return sum(storages.values())


def cpu_step_peak(step_fn) -> int:
    """Peak live CPU tensor bytes during ``step_fn()`` above those live at its start.

    ``step_fn`` runs twice under the profiler and the second call is measured: the profiler
    sees no free of a block allocated before it started, so a step that frees what the
    previous step allocated (outputs kept for a teacher, a replaced table) would otherwise
    look as if it kept them.
    """
    from torch.profiler import ProfilerActivity, profile, record_function

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step_fn()
        with record_function("bench.perf.measured_step"):
            step_fn()
    events = list(prof.profiler.kineto_results.events())
    (mark,) = [e for e in events if e.name() == "bench.perf.measured_step"]
    # Raw allocator records in time order (the FunctionEvent view folds them into ops).
    memory = sorted((e for e in events if e.name() == "[memory]" and str(e.device_type()).endswith("CPU")),
                    key=lambda e: e.start_ns())
    live = peak = 0
    start: int | None = None
    for e in memory:
        if e.start_ns() > mark.end_ns():
            break
        if start is None and e.start_ns() >= mark.start_ns():
            start = peak = live  # live bytes when the measured step begins
        live += e.nbytes()
        if start is not None:
            peak = max(peak, live)
    return 0 if start is None else max(0, peak - start)
