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
from .measure import Options, measure, measure_pair
from .rows import RowSpec, expand_rows, plan_rows
from .table import environment, format_table, pair_records, summarize

PROG = "bench.perf"
DESCRIPTION = "per-step time and peak memory of every base and every BASE+RULE pair"
RESULT_TAG = "PERF_RESULT "


def add_workload_args(p: argparse.ArgumentParser) -> None:
    """The measured workload's options (also ``bench.fd_agreement``'s): dataset, network, labels, batches."""
    p.add_argument("--dataset", default="digits", help="the dataset every row trains on (a registered name)")
    p.add_argument("--network", default="cnn_small", help="the network every row trains (a registered name)")
    p.add_argument("--n-labels", type=int, default=50, help="labeled training samples of the split")
    p.add_argument("--batch-labeled", type=int, default=32, help="global labeled batch per step")
    p.add_argument("--batch-unlabeled", type=int, default=96, help="global unlabeled batch per step")


def build_parser() -> argparse.ArgumentParser:
    p = make_parser(PROG, "bench.perf", DESCRIPTION)
    p.allow_abbrev = False  # its internal options (--one, --hparams, ...) must not swallow a mistyped one
    p.add_argument("--algorithms", help="comma-separated names, BASE+RULE allowed (default: every base with a "
                   "composition, every composition, and the standalone meta methods); bases of the rows are added")
    p.add_argument("--variants", nargs="+", default=[], metavar="NAME:FIELD=VALUE",
                   help="explicit variant rows, e.g. pseudo_label+l2i_o:meta_method=exact (several per name allowed; "
                   "replaces the automatic variants of that name)")
    p.add_argument("--no-auto-variants", action="store_true",
                   help="do not expand a rule's method fields (meta_method) into one row per value")
    add_workload_args(p)
    p.add_argument("--steps", type=int, default=20,
                   help="timed steps per row and repeat; a variant's are pairs (a base step, then its step)")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps before them (of both rows of a pair)")
    p.add_argument("--repeat", type=int, default=1,
                   help="measure every row (every base-variant pair) this many times, each in a fresh process: "
                   "repeat x steps pairs per ratio")
    p.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda if available, else cpu")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's default here)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="also write the table to this .csv or .parquet file, and every timed pair to "
                   "OUT's name with -pairs before the suffix")
    p.add_argument("--in-process", action="store_true", help="measure every row in this process (no subprocesses)")
    p.add_argument("--dry-run", action="store_true", help="list the rows (name, order, base) and exit")
    p.add_argument("--one", help=argparse.SUPPRESS)  # worker mode: measure one row, print one JSON line
    p.add_argument("--hparams", default="{}", help=argparse.SUPPRESS)
    p.add_argument("--pair-base", help=argparse.SUPPRESS)  # worker mode: time --one against this base, interleaved
    p.add_argument("--pair-base-hparams", default="{}", help=argparse.SUPPRESS)
    return p


def options_from_args(args: argparse.Namespace) -> Options:
    """The measuring options of a command line; UsageError on bad input."""
    import datasets
    from algorithms.networks import check_network

    for flag, v, low in (("--steps", args.steps, 1), ("--warmup", args.warmup, 0), ("--n-labels", args.n_labels, 1),
                         ("--batch-labeled", args.batch_labeled, 1), ("--batch-unlabeled", args.batch_unlabeled, 1),
                         ("--seed", args.seed, 0), ("--repeat", args.repeat, 1)):
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


def worker_args(spec: RowSpec, opts: Options, base: RowSpec | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "bench.perf", "--one", spec.algorithm, "--hparams", json.dumps(spec.hparams),
           "--dataset", opts.dataset, "--network", opts.network, "--n-labels", str(opts.n_labels),
           "--batch-labeled", str(opts.batch_labeled), "--batch-unlabeled", str(opts.batch_unlabeled),
           "--steps", str(opts.steps), "--warmup", str(opts.warmup), "--device", opts.device,
           "--threads", str(opts.threads), "--seed", str(opts.seed)]
    if base is not None:
        cmd += ["--pair-base", base.algorithm, "--pair-base-hparams", json.dumps(base.hparams)]
    return cmd


def spawn(cmd: list[str]) -> subprocess.CompletedProcess:
    """Run a row's worker command (tests replace it to stay in one process)."""
    return subprocess.run(cmd, capture_output=True, text=True)


def measure_isolated(spec: RowSpec, opts: Options, base: RowSpec | None = None) -> dict[str, Any]:
    """Measure ``spec`` (against ``base``, interleaved: :func:`measure_pair`) in a fresh process."""
    proc = spawn(worker_args(spec, opts, base))
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG):])
    tail = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
    return {"error": tail}


def one_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {' '.join(str(e).split())}"[:300]


def jobs(rows: list[RowSpec]) -> list[tuple[RowSpec, RowSpec | None]]:
    """What is measured: (row, its base) for every row compared with another one, timed as a
    pair; (row, None) for a row that no measured row is compared with (timed alone). A base
    that has variants gets its times from their pairs."""
    by_name = {r.name: r for r in rows}
    compared = {r.reference for r in rows if r.reference and r.reference != r.name and r.reference in by_name}
    out: list[tuple[RowSpec, RowSpec | None]] = []
    for r in rows:
        if r.reference and r.reference != r.name and r.reference in by_name:
            out.append((r, by_name[r.reference]))
        elif r.name not in compared:
            out.append((r, None))
    return out


def _add(results: dict[str, dict], name: str, part: dict[str, Any], repeat: int, base_ms: list[float] | None = None) -> None:
    """Fold one measurement of a row into its result: times appended (with the paired base's and
    the repeat index), memory from the first measurement, the first error kept."""
    if "error" in part:
        results.setdefault(name, {}).setdefault("error", part["error"])
        return
    r = results.setdefault(name, {})
    r.setdefault("ms", []).extend(part["ms"])
    r.setdefault("repeat", []).extend([repeat] * len(part["ms"]))
    if base_ms is not None:
        r.setdefault("base_ms", []).extend(base_ms)
    for k in ("state_bytes", "step_bytes", "holdout"):
        r.setdefault(k, part.get(k, 0))
    if part.get("floor_ms"):
        r.setdefault("floor_ms", []).extend(part["floor_ms"])
    if part.get("floor_step_bytes") is not None:
        r.setdefault("floor_step_bytes", part["floor_step_bytes"])


def run_rows(rows: list[RowSpec], opts: Options, in_process: bool = False,
             classes: dict[str, type] | None = None, log=print, repeat: int = 1) -> dict[str, dict]:
    """Measure every row, ``repeat`` times: each row compared with a base as a pair with it
    (:func:`measure_pair`), in a subprocess per pair and repeat unless ``in_process``; the
    repeats go round all pairs in turn, so slow drifts of the machine spread over every row.
    Failures become ``{"error": one line}`` so the table still prints. ``classes`` maps
    algorithm names to classes for in-process rows the registry does not know (tests' dummy
    rules). Returns by row name: ms (all timed steps), repeat (the repeat of each), base_ms
    (a paired row: its base's step of each pair), state_bytes, step_bytes, holdout, floor_ms
    (a paired row whose rule declares ``floor_passes``: its passes' time after each pair),
    floor_step_bytes (a paired row with a memory floor, ``bench.perf.floors.memory_floor_step``)."""
    results: dict[str, dict] = {}
    for rep in range(repeat):
        for spec, base in jobs(rows):
            started = time.perf_counter()
            if in_process:
                try:
                    if base is None:
                        got = measure(spec, opts, (classes or {}).get(spec.algorithm))
                    else:
                        got = measure_pair(base, spec, opts, classes)
                except Exception as e:  # a failing row is a result too: the table goes on
                    got = {"error": one_line(e)}
            else:
                got = measure_isolated(spec, opts, base)
            if base is None or "error" in got:
                _add(results, spec.name, got, rep)
            else:
                _add(results, base.name, got["base"], rep)
                _add(results, spec.name, got["variant"], rep, got["base"]["ms"])
            what = spec.name if base is None else f"{spec.name} against {base.name}"
            log(f"  measured {what} ({rep + 1}/{repeat}) in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return results


def pairs_path(out: str) -> str:
    stem, dot, ext = out.rpartition(".")
    return f"{stem}-pairs.{ext}"


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
            if args.pair_base:
                hp = json.loads(args.pair_base_hparams)
                base = expand_rows(args.pair_base, get_algorithm(args.pair_base), [hp] if hp else None, auto=False)[0]
                result = measure_pair(base, spec, opts)
            else:
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
    results = run_rows(rows, opts, args.in_process, repeat=args.repeat)
    records = summarize(rows, results)
    print(format_table(records))
    missed = [r["name"] for r in records if r["met"].startswith("NO")]
    unknown = [r["name"] for r in records if r["met"] == "n/a"]
    print(f"targets missed: {len(missed)}" + (f" ({', '.join(missed)})" if missed else "")
          + (f"; not measured: {', '.join(unknown)}" if unknown else ""))
    if args.out:
        write_table(records, args.out)
        write_table(pair_records(rows, results), pairs_path(args.out))
        print(f"wrote {args.out} and {pairs_path(args.out)}")
    return 0
