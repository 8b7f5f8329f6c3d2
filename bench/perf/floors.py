"""A row's pass-count floor: the passes its meta rule's definition needs beyond the base's
step (``MetaRule.floor_passes``, argued in each rule's docstring), each timed alone on the
row's own network and batch sizes with the functional passes the rules use."""
from __future__ import annotations

import time

import torch

from algorithms.meta.functional import directional_derivatives, functional_forward, loss_gradient, parameters_of

REPEATS = 5  # timings of each pass (after one untimed): their median counts


def _sizes(run, opts) -> dict[str, int]:
    b_l, b_u = opts.batch_labeled, opts.batch_unlabeled
    return {"labeled": b_l, "unlabeled": b_u, "holdout": run.holdout.size, "inner": b_l + b_u, "mixed": max(b_l, b_u)}


def _inputs(pool: torch.Tensor, n: int) -> torch.Tensor:
    reps = -(-n // pool.shape[0])
    return (pool if reps == 1 else pool.repeat(reps, *([1] * (pool.dim() - 1))))[:n]


def _pass(kind: str, model, x: torch.Tensor):
    """A closure running one pass of ``kind`` over x [n, ...] at the model's weights."""
    if kind == "forward":
        return lambda: functional_forward(model, parameters_of(model), x, "train").sum()
    if kind == "forward_backward":
        return lambda: loss_gradient(model, lambda out, t: out.logsumexp(dim=1), x, x, "train")
    if kind == "jvp":
        v = {n: torch.randn_like(p) for n, p in parameters_of(model).items()}
        return lambda: directional_derivatives(model, lambda out, t: out, x, x, v, "train", "jvp")
    raise ValueError(f"unknown pass kind {kind!r}")


def passes_of(algo) -> tuple[tuple[str, str], ...] | None:
    """The floor passes of a composed algorithm's rule at its ``meta_method`` (None: none declared)."""
    rule = getattr(algo, "rule", None)
    method = getattr(getattr(rule, "hp", None), "meta_method", None)
    return type(rule).floor_passes.get(method) if rule is not None else None


def floor_ms(run, opts, sync=lambda: None) -> float | None:
    """Milliseconds of the row's floor passes (the sum of each pass's median), or None."""
    passes = passes_of(run.algo)
    if not passes:
        return None
    sizes, total = _sizes(run, opts), 0.0
    pool = run.x_u if run.x_u.shape[0] else run.x_l
    for kind, batch in passes:
        fn = _pass(kind, run.model, _inputs(pool, sizes[batch]))
        fn()
        times = []
        for _ in range(REPEATS):
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            times.append(1000.0 * (time.perf_counter() - t0))
        total += sorted(times)[REPEATS // 2]
    return total
