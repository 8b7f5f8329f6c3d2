"""python -m bench.fd_agreement: how often finite differences give the same 0/1 weights as jvp.

Meta-Semi's weights are signs, w_j = [d_j >= 0] with d_j = <grad G, grad L_j> (002 Eq. 9).
``fd`` (central difference, two forwards, O(eps^2) error) and ``jvp`` (exact, one forward-mode
pass) can only disagree on a sample whose d_j is within the difference's error of 0. This
command trains each ``BASE+meta_semi`` (and the standalone ``meta_semi``) with ``jvp``, the
trajectory, and at every step also computes the weights with ``fd`` at the same weights and
inputs (the RNG rewound, so the trajectory is the jvp run's), and counts equal weights:

- ``agree_used``: over the samples the base uses (mask > 0; for the standalone, every mixed
  sample): the number that decides whether ``fd`` can stand in for ``jvp``;
- ``agree_all``: over every unlabeled sample (a masked-out sample has d_j = 0 under both,
  so it always agrees);
- ``steps_all_equal``: the fraction of steps whose weight vectors are identical.

The runs are built by the engine's own builder (``bench.engine.build_run``), as ``bench.perf``.
docs/benchmarks.md records the figures and the defaults chosen from them.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

import torch

import algorithms.meta_semi as standalone_module
from algorithms import get_algorithm, list_compositions
from algorithms.meta.functional import same_randomness
from algorithms.meta.weights import sign_weights

from .cli_errors import fail, make_parser
from .config import RunConfig, RunEnv
from .engine import build_run
from .perf.cli import add_workload_args

RULE = "meta_semi"
PROG = "bench.fd_agreement"


class Tally:
    """Running counts of equal 0/1 weights between the jvp and fd meta steps."""

    def __init__(self) -> None:
        self.used = self.used_equal = self.all = self.all_equal = self.steps = self.steps_equal = 0

    def add(self, w_jvp: torch.Tensor, w_fd: torch.Tensor, used: torch.Tensor) -> None:
        equal = w_jvp == w_fd
        self.all += equal.numel()
        self.all_equal += int(equal.sum())
        self.used += int(used.sum())
        self.used_equal += int((equal & used).sum())
        self.steps += 1
        self.steps_equal += int(bool(equal.all()))

    def record(self) -> dict[str, Any]:
        frac = lambda a, b: a / b if b else float("nan")  # noqa: E731
        return {"steps": self.steps, "used_samples": self.used, "agree_used": frac(self.used_equal, self.used),
                "agree_all": frac(self.all_equal, self.all), "steps_all_equal": frac(self.steps_equal, self.steps)}


def probe_rule(algo, tally: Tally) -> None:
    """Wrap the composed algorithm's rule so each meta step is also taken with ``fd``."""
    rule = algo.rule
    inner = rule.meta_step

    def meta_step(s, batch, info):
        with same_randomness(s.x_l.device) as again:
            rule.hp.meta_method = "fd"
            fd = inner(s, batch, info)
            rule.hp.meta_method = "jvp"
            again()
        out = inner(s, batch, info)
        tally.add(sign_weights(out.d), sign_weights(fd.d), s.mask > 0)
        return out

    rule.meta_step = meta_step


def probe_standalone(tally: Tally):
    """Wrap the standalone algorithm's directional derivatives the same way; returns an undo."""
    inner = standalone_module.directional_derivatives

    def wrapped(model, loss_fn, x, targets, direction, mode="train", method="jvp", **kw):
        with same_randomness(x.device) as again:
            d_fd = inner(model, loss_fn, x, targets, direction, mode, "fd", **kw)
            again()
        d = inner(model, loss_fn, x, targets, direction, mode, method, **kw)
        tally.add(sign_weights(d), sign_weights(d_fd), torch.ones_like(d, dtype=torch.bool))
        return d

    standalone_module.directional_derivatives = wrapped
    return lambda: setattr(standalone_module, "directional_derivatives", inner)


def measure(algorithm: str, args: argparse.Namespace) -> dict[str, Any]:
    """Train ``algorithm`` (jvp) for ``args.steps`` steps, comparing fd's weights at each step."""
    cfg = RunConfig(dataset=args.dataset, algorithm=algorithm, network=args.network, n_labels=args.n_labels,
                    steps=args.steps, seed=args.seed, batch_labeled=args.batch_labeled,
                    batch_unlabeled=args.batch_unlabeled, hparams={"meta_method": "jvp"})
    run = build_run(cfg, RunEnv(results_dir=""))
    tally = Tally()
    undo = None
    if getattr(run.algo, "rule", None) is not None:
        probe_rule(run.algo, tally)
    else:
        undo = probe_standalone(tally)
    try:
        for step in range(args.steps):
            run.model.train()
            run.algo.train_step(run.next_batch(), step, run.stepper)
    finally:
        if undo:
            undo()
    return {"algorithm": algorithm, "network": args.network, **tally.record()}


def build_parser() -> argparse.ArgumentParser:
    p = make_parser(PROG, "bench.fd_agreement", __doc__.split("\n\n")[0])
    p.add_argument("--algorithms", default="",
                   help="comma-separated BASE+meta_semi compositions and/or meta_semi (default: all of them)")
    add_workload_args(p)
    p.add_argument("--steps", type=int, default=200, help="training steps per run (every one compared)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    names = [n for n in args.algorithms.split(",") if n] or (
        [c for c in list_compositions() if c.endswith("+" + RULE)] + [RULE])
    for n in names:  # bad input: one line and status 2 before any training
        try:
            cls = get_algorithm(n)
        except Exception as e:  # noqa: BLE001 - the registry's own one-line message
            fail(PROG, str(e))
        if n != RULE and getattr(getattr(cls, "rule_class", None), "name", "") != RULE:
            fail(PROG, f"{n} is neither a BASE+{RULE} composition nor {RULE}")
    if args.steps < 1:
        fail(PROG, "--steps must be >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    print(f"{'algorithm':32} {'network':12} {'steps':>5} {'used':>7} {'agree_used':>10} {'agree_all':>9} "
          f"{'steps_all_equal':>15}")
    for n in names:
        r = measure(n, args)
        print(f"{r['algorithm']:32} {r['network']:12} {r['steps']:5d} {r['used_samples']:7d} {r['agree_used']:10.5f} "
              f"{r['agree_all']:9.5f} {r['steps_all_equal']:15.4f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
