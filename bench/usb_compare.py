"""Our training step against USB's (semilearn 0.3.2), side by side in one process: FixMatch,
MixMatch and Mean Teacher on WRN-28-2, same inputs, same threads.

USB is not a dependency of this project; install it in an environment of its own, with this
project importable (its own dependencies beyond torch are pandas and pyarrow here)::

    python3 -m venv ~/usb-venv
    ~/usb-venv/bin/pip install torch torchvision semilearn==0.3.2 pandas pyarrow
    PYTHONPATH=$PWD ~/usb-venv/bin/python -m bench.usb_compare

Without ``semilearn`` the command says so in one line and exits with status 2.

What a step is, on both sides: everything the trainer does per iteration once a batch of
augmented views is on the device. USB: its algorithm's ``train_step`` (forwards, losses,
``.item()`` logging), then its per-step hooks, ``ParamUpdateHook`` (backward, optimizer and
scheduler steps, ``zero_grad``) and ``EMAHook`` (EMA of the weights, copied into its
``ema_model``); the other hooks act every ``num_eval_iter`` steps or time CUDA events. Ours:
``Algorithm.train_step`` (augmentation, forwards, losses, Stepper), the evaluation EMA and the
finiteness check, as ``bench.engine`` runs them. Both get the same prepared views (made once
with our CIFAR-10 augmentations): USB augments in DataLoader worker processes, outside its
step, so ours replays the views too; ``--with-augment`` adds a row of ours augmenting inside
its step, as the engine does.

USB's side is built as its trainer builds it: ``semilearn.get_config`` (its defaults and its
algorithm's arguments) with the values of its classic CIFAR-10 configs (lambda_u 1 / 100 / 50,
MixMatch alpha 0.5 and warm-up 1/64, Mean Teacher warm-up 0.4, EMA 0.999, SGD lr 0.03
Nesterov, weight decay 5e-4 off BatchNorm and biases, 2^20 iterations), its WRN-28-2
(``semilearn.nets.wrn_28_2``: conv1 with a bias, 16 parameters more than ours), no data
loaders (``dataset`` none). Ours: the default ``RunConfig`` (the same SGD, decay on every
weight) and each method's default hyperparameters.

Timing: a shared warm-up, then rounds in which every contender takes one step (order rotated
each round, ``bench.paired_timing``); each contender's time over USB's in the same round is one
paired ratio, reported as the median with a 95% bootstrap interval over the rounds.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from typing import Callable

import torch

from .cli_errors import UsageError, fail, make_parser
from .paired_timing import interleaved_times, median_ratio
from .usb_steps import BASES, BaseSpec, make_views, network_check, network_pass, ours_step, usb_step

PROG = "bench.usb_compare"
TARGET = 0.85  # issue 14: our base steps at <= 0.85x USB's


def _parse_batch(text: str) -> tuple[str, int, int]:
    name, sep, sizes = text.partition("=")
    lab, plus, unl = sizes.partition("+")
    if not sep or not plus or not lab.strip().isdigit() or not unl.strip().isdigit():
        raise UsageError(f"--batch wants BASE=LABELED+UNLABELED, e.g. fixmatch=16+48, got {text!r}")
    name, b_l, b_u = name.strip(), int(lab), int(unl)
    if name not in BASES:
        raise UsageError(f"--batch: unknown base {name!r} (valid: {', '.join(BASES)})")
    if b_l < 1 or b_u < b_l or b_u % b_l:
        raise UsageError(f"--batch {text!r}: USB needs the unlabeled batch to be a positive multiple of the labeled one")
    return name, b_l, b_u


def build_parser():
    p = make_parser(PROG, PROG, __doc__.splitlines()[0])
    p.add_argument("--bases", default=",".join(BASES), help="comma-separated subset of " + ", ".join(BASES))
    p.add_argument("--rounds", type=int, default=15, help="timed rounds (one step of every contender each)")
    p.add_argument("--warmup", type=int, default=3, help="untimed rounds before them")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads, for both")
    p.add_argument("--batch", action="append", default=[], metavar="BASE=L+U",
                   help="override a base's global batch, e.g. fixmatch=64+448 (defaults: "
                   + ", ".join(f"{n}={s.batch_labeled}+{s.batch_unlabeled}" for n, s in BASES.items()) + ")")
    p.add_argument("--no-channels-last", action="store_true", help="leave out our channels_last contender")
    p.add_argument("--usb-channels-last", action="store_true",
                   help="add USB with its network in channels_last (its trainer has no such option; a reference)")
    p.add_argument("--with-augment", action="store_true",
                   help="add ours augmenting inside its step, as bench.engine runs it")
    p.add_argument("--networks", action="store_true",
                   help="first time the networks alone: forward + backward of each WRN-28-2 on FixMatch's images "
                        "(ours-oop: our network with its activations out of place, as before they went in place)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--csv", help="write every round's time and ratio to this .csv file")
    return p


def _environment(threads: int) -> str:
    from importlib.metadata import version

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"torch {torch.__version__}, semilearn {version('semilearn')}, {threads} threads, {cpu}, "
            f"{os.cpu_count()} CPUs, load average {load}")


def _measure(group: str, batch: str, steps: dict[str, Callable[[int], None]], args) -> list[dict]:
    """Time ``steps`` interleaved, print one row per contender, return every round as a record."""
    started = time.perf_counter()
    print(f"  measuring {group}: {len(steps)} contenders x ({args.warmup} + {args.rounds}) steps ...",
          file=sys.stderr, flush=True)
    times = interleaved_times(steps, args.rounds, args.warmup)
    print(f"  {group} took {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    for name, ts in times.items():
        if name == "usb":
            ratio, verdict = "1", ""
        else:
            r, lo, hi = median_ratio(ts, times["usb"], seed=args.seed)
            ratio, verdict = f"{r:.3f} [{lo:.3f}, {hi:.3f}]", ("yes" if r <= TARGET else "no")
        print(f"{group:13s} {name:10s} {batch:>7s} {1000 * statistics.median(ts):10.1f}  {ratio:24s} {verdict}",
              flush=True)
    return [{"group": group, "contender": name, "round": k, "seconds": t, "ratio_to_usb": t / times["usb"][k]}
            for name, ts in times.items() for k, t in enumerate(ts)]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if importlib.util.find_spec("semilearn") is None:
        fail(PROG, "semilearn is not importable here; install semilearn==0.3.2 in a separate environment "
                   "(see python -m bench.usb_compare --help and docs/performance.md)")
    try:
        bases = [b.strip() for b in args.bases.split(",") if b.strip()]
        unknown = [b for b in bases if b not in BASES]
        if not bases or unknown:
            raise UsageError(f"--bases: unknown or empty {unknown or args.bases!r} (valid: {', '.join(BASES)})")
        for flag, value, low in (("--rounds", args.rounds, 2), ("--warmup", args.warmup, 0),
                                 ("--threads", args.threads, 1), ("--seed", args.seed, 0)):
            if value < low:
                raise UsageError(f"{flag} must be at least {low}, got {value}")
        if args.csv and not args.csv.endswith(".csv"):
            raise UsageError(f"--csv must end in .csv, got {args.csv!r}")
        specs = dict(BASES)
        for text in args.batch:
            name, b_l, b_u = _parse_batch(text)
            specs[name] = BaseSpec(**{**specs[name].__dict__, "batch_labeled": b_l, "batch_unlabeled": b_u})
    except UsageError as e:
        fail(PROG, str(e))

    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # as bench.engine does, for both
    warnings.filterwarnings("ignore", category=FutureWarning)  # timm's, on importing semilearn
    print(f"# {_environment(args.threads)}")
    print(f"# {network_check()}")
    print(f"# {args.rounds} interleaved rounds after {args.warmup} warm-up rounds; ratio = median of per-round "
          "ratios to usb [95% bootstrap interval]")
    print(f"{'base':13s} {'contender':10s} {'batch':>7s} {'median ms':>10s}  {'ratio to usb':24s} <= {TARGET}")
    records: list[dict] = []
    with tempfile.TemporaryDirectory() as workdir:
        if args.networks:
            fm = make_views(specs["fixmatch"], 1, args.seed)[0]
            images = torch.cat([fm.x_lb, fm.x_ulb_w, fm.x_ulb_s])
            steps = {"usb": network_pass(images, "usb", False, seed=args.seed),
                     "ours": network_pass(images, "ours", False, seed=args.seed),
                     "ours-oop": network_pass(images, "ours", False, inplace=False, seed=args.seed)}
            if not args.no_channels_last:
                steps["ours+cl"] = network_pass(images, "ours", True, seed=args.seed)
            if args.usb_channels_last:
                steps["usb+cl"] = network_pass(images, "usb", True, seed=args.seed)
            records += _measure("network", str(images.shape[0]), steps, args)
        for base in bases:
            spec = specs[base]
            views = make_views(spec, 4, args.seed)
            steps = {"usb": usb_step(spec, views, False, args.seed, workdir),
                     "ours": ours_step(base, spec, views, False, False, args.seed)}
            if not args.no_channels_last:
                steps["ours+cl"] = ours_step(base, spec, views, True, False, args.seed)
            if args.usb_channels_last:
                steps["usb+cl"] = usb_step(spec, views, True, args.seed, workdir)
            if args.with_augment:
                steps["ours+aug"] = ours_step(base, spec, views, False, True, args.seed)
            records += _measure(base, f"{spec.batch_labeled}+{spec.batch_unlabeled}", steps, args)
    print("# batches: labeled + unlabeled; " + "; ".join(f"{b}: {BASES[b].paper_batch}" for b in bases))
    print(f"# end: load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if args.csv:
        import pandas as pd

        pd.DataFrame(records).to_csv(args.csv, index=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
