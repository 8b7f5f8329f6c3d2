"""python -m bench.perf.passes ROW [ROW ...]: per-step sample-passes of training steps.

A ROW is ``NAME`` or ``NAME:FIELD=VALUE,...`` (e.g. ``pseudo_label+l2i_l:meta_method=jvp``),
built as ``bench.perf`` builds it (digits, ``cnn_small``, 32 + 96, steps from the middle of a
nominal run). For each row, the summed batch sizes of every ``aten::convolution`` call (the
forwards, including those inside a forward-mode pass) and of every ``aten::convolution_backward``
call, per step, over ``--steps`` steps after one untimed step (the first of the nominal run's
second half: a ``diag_every`` step, left out). A network with L convolutions counts a B-sample
forward as L x B. Deterministic, so a loaded machine does not move it: it shows which passes a
change removed where a time ratio would drown in noise.
"""
from __future__ import annotations

import sys

import torch

from algorithms import get_algorithm
from algorithms.hparams import ConfigError

from ..cli_errors import UsageError, fail, make_parser
from .measure import Options, RowRun
from .rows import expand_rows, parse_variant


def conv_samples(row: RowRun, steps: int) -> tuple[float, float]:
    """(forward, backward) convolution batch sizes per step over ``steps`` steps of ``row``."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(steps):
            row.timed_step()
    count = {"aten::convolution": 0, "aten::convolution_backward": 0}
    for e in prof.events():
        if e.name in count and e.input_shapes and e.input_shapes[0]:
            count[e.name] += e.input_shapes[0][0]
    return count["aten::convolution"] / steps, count["aten::convolution_backward"] / steps


PROG = "bench.perf.passes"


def main(argv: list[str] | None = None) -> int:
    p = make_parser(PROG, "bench.perf.passes", __doc__.split("\n\n")[0])
    p.add_argument("rows", nargs="+", metavar="ROW", help="NAME or NAME:FIELD=VALUE,... (a bench.perf row)")
    p.add_argument("--steps", type=int, default=10, help="profiled steps per row (after one untimed step)")
    p.add_argument("--network", default="cnn_small", help="the network every row trains")
    args = p.parse_args(argv)
    if args.steps < 1:
        fail(PROG, "--steps must be >= 1")
    try:  # every row as bench.perf --variants builds it (unknown fields, bad values: one line), before profiling
        specs = []
        for arg in args.rows:
            name, values = parse_variant(arg) if ":" in arg else (arg, None)
            specs.append(expand_rows(name, get_algorithm(name), [values] if values else None, auto=False)[0])
    except (ConfigError, UsageError) as e:
        fail(PROG, str(e))
    torch.set_num_threads(1)
    print(f"{'row':50} {'forward/step':>12} {'backward/step':>13}")
    for spec in specs:
        row = RowRun(spec, Options(network=args.network))
        row.timed_step()
        fwd, bwd = conv_samples(row, args.steps)
        print(f"{spec.name:50} {fwd:12.1f} {bwd:13.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
