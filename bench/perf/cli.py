"""The command line of ``python -m bench.perf``; each row is measured in its own subprocess
(``python -m bench.perf --one NAME ...``, one JSON line back) unless ``--in-process``."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from typing import Any

import torch

from algorithms import ConfigError, get_algorithm

from ..cli_errors import UsageError, fail, make_parser, split_list
from .measure import Options, measure
from .rows import RowSpec, expand_rows, plan_rows
from .table import environment, format_table, summarize

PROG = "bench.perf"
DESCRIPTION = "per-step time and peak memory of every base and every BASE+RULE pair"
RESULT_TAG = "PERF_RESULT "


def build_parser() -> argparse.ArgumentParser:
    p = make_parser(PROG, "bench.perf", DESCRIPTION)
    p.add_argument("--algorithms", help="comma-separated names, BASE+RULE allowed (default: every base with a "
                   "composition, every composition, and the standalone meta methods); bases of the rows are added")
    p.add_argument("--variants", nargs="+", default=[], metavar="NAME:FIELD=VALUE",
                   help="explicit variant rows, e.g. pseudo_label+l2i_o:meta_method=exact (several per name allowed; "
                   "replaces the automatic variants of that name)")
    p.add_argument("--no-auto-variants", action="store_true",
                   help="do not expand a rule's method fields (meta_method) into one row per value")
    p.add_argument("--dataset", default="digits")
    p.add_argument("--network", default="cnn_small")
    p.add_argument("--n-labels", type=int, default=50)
    p.add_argument("--batch-labeled", type=int, default=32)
    p.add_argument("--batch-unlabeled", type=int, default=96)
    p.add_argument("--steps", type=int, default=20, help="timed steps per row")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps before them")
    p.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda if available, else cpu")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's default here)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="also write the table to this .csv or .parquet file")
    p.add_argument("--in-process", action="store_true", help="measure every row in this process (no subprocesses)")
    p.add_argument("--dry-run", action="store_true", help="list the rows (name, order, base) and exit")
    p.add_argument("--one", help=argparse.SUPPRESS)  # worker mode: measure one row, print one JSON line
    p.add_argument("--hparams", default="{}", help=argparse.SUPPRESS)
    return p


def options_from_args(args: argparse.Namespace) -> Options:
    """The measuring options of a command line; UsageError on bad input."""
    import datasets
    from algorithms.networks import check_network

    for flag, v, low in (("--steps", args.steps, 1), ("--warmup", args.warmup, 0), ("--n-labels", args.n_labels, 1),
                         ("--batch-labeled", args.batch_labeled, 1), ("--batch-unlabeled", args.batch_unlabeled, 1),
                         ("--seed", args.seed, 0)):
        if v < low:
            raise UsageError(f"{flag} must be {'positive' if low else 'non-negative'}, got {v}")
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be at least 1, got {args.threads}")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda but torch sees no GPU here")
    if args.dataset not in datasets.list_datasets():
        raise UsageError(f"unknown dataset {args.dataset!r} (valid: {', '.join(datasets.list_datasets())})")
    info = datasets.get_info(args.dataset)
    try:
        n_val = datasets.resolve_n_val(info, args.n_labels, "scarce", None)
        datasets.validate_request(info, args.n_labels, n_val)
        check_network(args.network, info.input_shape)
        datasets.check_available(args.dataset)
    except (datasets.SplitError, datasets.DatasetUnavailable, ValueError) as e:
        raise UsageError(str(e)) from None
    if args.out and not args.out.endswith((".csv", ".parquet")):
        raise UsageError(f"--out must end in .csv or .parquet, got {args.out!r}")
    return Options(args.dataset, args.network, args.n_labels, args.batch_labeled, args.batch_unlabeled, args.steps,
                   args.warmup, device, args.threads or torch.get_num_threads(), args.seed)


def worker_args(spec: RowSpec, opts: Options) -> list[str]:
    return [sys.executable, "-m", "bench.perf", "--one", spec.algorithm, "--hparams", json.dumps(spec.hparams),
            "--dataset", opts.dataset, "--network", opts.network, "--n-labels", str(opts.n_labels),
            "--batch-labeled", str(opts.batch_labeled), "--batch-unlabeled", str(opts.batch_unlabeled),
            "--steps", str(opts.steps), "--warmup", str(opts.warmup), "--device", opts.device,
            "--threads", str(opts.threads), "--seed", str(opts.seed)]


def spawn(cmd: list[str]) -> subprocess.CompletedProcess:
    """Run a row's worker command (tests replace it to stay in one process)."""
    return subprocess.run(cmd, capture_output=True, text=True)


def measure_isolated(spec: RowSpec, opts: Options) -> dict[str, Any]:
    proc = spawn(worker_args(spec, opts))
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG):])
    tail = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
    return {"error": tail}


def one_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {' '.join(str(e).split())}"[:300]


def run_rows(rows: list[RowSpec], opts: Options, in_process: bool = False,
             classes: dict[str, type] | None = None, log=print) -> dict[str, dict]:
    """Measure every row (in a subprocess each unless ``in_process``); failures become
    ``{"error": one line}`` so the table still prints. ``classes`` maps algorithm names to
    classes for in-process rows that the registry does not know (tests' dummy rules)."""
    results = {}
    for spec in rows:
        started = time.perf_counter()
        if in_process:
            try:
                results[spec.name] = measure(spec, opts, (classes or {}).get(spec.algorithm))
            except Exception as e:  # a failing row is a result too: the table goes on
                results[spec.name] = {"error": one_line(e)}
        else:
            results[spec.name] = measure_isolated(spec, opts)
        log(f"  measured {spec.name} in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return results


def write_table(records: list[dict[str, Any]], path: str) -> None:
    import pandas as pd

    frame = pd.DataFrame(records)
    if path.endswith(".csv"):
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        opts = options_from_args(args)
        if args.one:
            spec = expand_rows(args.one, get_algorithm(args.one), [json.loads(args.hparams)] if args.hparams != "{}" else None,
                               auto=False)[0]
        else:
            try:
                names = split_list(args.algorithms) if args.algorithms is not None else None
            except ValueError as e:
                raise UsageError(f"--algorithms: {e}") from None
            rows = plan_rows(names, args.variants, not args.no_auto_variants)
    except ImportError as e:  # a broken algorithm or rule file: say which, in one line
        fail(PROG, f"cannot load the algorithm registry: {one_line(e)}")
    except ConfigError as e:
        fail(PROG, str(e))
    except UsageError as e:
        fail(PROG, str(e))
    if args.one:
        try:
            result = measure(spec, opts)
        except Exception as e:  # reported as the row's error by the parent
            result = {"error": one_line(e)}
        print(RESULT_TAG + json.dumps(result), flush=True)
        return 0
    if args.dry_run:
        for r in rows:
            print(f"{r.name}  {r.order}  base={r.reference}")
        return 0
    print(environment(opts), flush=True)  # before the progress lines on stderr
    if not rows:
        print("nothing to measure")
        return 0
    records = summarize(rows, run_rows(rows, opts, args.in_process))
    print(format_table(records))
    missed = [r["name"] for r in records if r["met"].startswith("NO")]
    unknown = [r["name"] for r in records if r["met"] == "n/a"]
    print(f"targets missed: {len(missed)}" + (f" ({', '.join(missed)})" if missed else "")
          + (f"; not measured: {', '.join(unknown)}" if unknown else ""))
    if args.out:
        write_table(records, args.out)
        print(f"wrote {args.out}")
    return 0
