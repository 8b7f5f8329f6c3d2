"""A row's pass-count floor: the passes its meta rule's definition needs beyond the base's
step (``MetaRule.floor_passes``, argued in each rule's docstring), timed alone on the row's
own network and batch sizes with the functional passes the rules use, once per timed pair
(so the floor is paired with the base step it is added to, like the ratio itself).

Its memory floor (:func:`memory_floor_step`): where a loss rule's meta step must run while the
base's training graph is alive (the template keeps the usual order, ``loss_rule_inputs``: the
base imputes from that very forward, or the meta step reads it), the least a step can hold is
that graph plus the largest floor pass run beside it; measured as one such step."""
from __future__ import annotations

import time
from typing import Callable

import torch

from algorithms.meta.functional import directional_derivatives, functional_forward, loss_gradient, parameters_of
from algorithms.meta.rule import LossRule

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


def _pass_fns(run, opts, passes) -> list[Callable]:
    """One closure per floor pass, on the row's network and batch sizes (inputs from its pool)."""
    sizes = _sizes(run, opts)
    pool = run.x_u if run.x_u.shape[0] else run.x_l
    return [_pass(kind, run.model, _inputs(pool, sizes[batch])) for kind, batch in passes]


def passes_of(algo) -> tuple[tuple[str, str], ...] | None:
    """The floor passes of a composed algorithm's rule at its hyperparameters (None: none declared)."""
    rule = getattr(algo, "rule", None)
    return type(rule).floor_for(rule.hp) if rule is not None else None


def floor_timer(run, opts, sync=lambda: None) -> Callable[[], float] | None:
    """A function timing one round of the row's floor passes (milliseconds, their sum), each
    pass run once untimed here; None if the rule declares none."""
    passes = passes_of(run.algo)
    if not passes:
        return None
    fns = _pass_fns(run, opts, passes)
    for fn in fns:
        fn()

    def one_round() -> float:
        total = 0.0
        for fn in fns:
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            total += 1000.0 * (time.perf_counter() - t0)
        return total

    return one_round


def memory_floor_step(run, opts, step: int) -> Callable[[], None] | None:
    """One step of the row's memory floor, to measure like a training step: the base's own
    forward (``prepare``, its graph kept), each floor pass run while that graph lives, then the
    base's loss backwarded (and then the passes over the ``mixed`` batch, a labeled term's own
    forward that the template defers past that backward). None where the meta step need not
    overlap the base's graph: a two-update rule (its meta step follows the base's update), a loss
    rule whose template takes the meta step first (decided in the warm-up steps), or no floor
    passes declared. Writes
    ``.grad`` and BatchNorm statistics like a step: call it after the timed steps."""
    algo = run.algo
    passes = passes_of(algo)
    if not passes or not isinstance(algo.rule, LossRule) or algo.meta_step_first() is not False:
        return None
    # the MixUp batch ("mixed": Meta-Gradient SSL's labeled term) is the loss's own forward, which the
    # template builds after the base's backward (LossTerms.deferred_labeled): never beside its graph
    beside = _pass_fns(run, opts, [p for p in passes if p[1] != "mixed"])
    after = _pass_fns(run, opts, [p for p in passes if p[1] == "mixed"])

    def one_step() -> None:
        s = algo.prepare(run.next_batch(), step)
        for fn in beside:
            fn()
        run.stepper.optimizer.zero_grad(set_to_none=False)
        algo.base_terms(s).total().backward()
        del s
        for fn in after:
            fn()

    return one_step
