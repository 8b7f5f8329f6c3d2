"""python -m bench.sensitivity: vary one or two hyperparameters over a grid, across seeds.

Everything else stays at the suite recipe (or ``--preset``). The grid runs as ordinary runs
through the same Ray Tune grid as ``python -m bench.run`` (finished runs are skipped), so
the rows land in runs/ and evals/ with the swept values in their hyperparameters and the
suite ``sensitivity:<study id>``; the study itself (what was varied, over what) is one row
of studies/. ``--plot`` draws the Meta-Semi Fig. 3 style figure from those Parquet files
(``results.plots``). Example, Meta-Semi's beta against ICT's MixUp alpha::

    python -m bench.sensitivity --algorithms meta_semi,ict --param beta,alpha --values 0.1,0.2,0.5,1.0 --seeds 3 --plot
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import hashlib
import itertools
import json
import os
import sys
import time

from algorithms import ConfigError

from .cli_errors import UsageError, csv_list, fail, interrupted, make_parser
from .ray_node import DEFAULT_CONNECT_TIMEOUT_S, RayStartError
from .config import RunConfig, RunEnv
from .planner import PlanRequest, plan_runs

PROG = "bench.sensitivity"


def build_parser() -> argparse.ArgumentParser:
    p = make_parser(PROG, "bench.sensitivity", __doc__.splitlines()[0])
    p.add_argument("--algorithms", type=csv_list(str), default=["meta_semi"], help="comma-separated methods")
    p.add_argument("--param", action="append", type=csv_list(str), required=True,
                   help="hyperparameter to vary: one name for every method, or one per method (comma-separated, "
                        "in --algorithms order); give --param twice for a 2-D grid")
    p.add_argument("--values", action="append", type=csv_list(float), required=True,
                   help="comma-separated values of the matching --param (within its search-space range)")
    p.add_argument("--dataset", default="digits")
    p.add_argument("--labels", type=int, help="number of labeled examples (default: the recipe's first)")
    p.add_argument("--seeds", type=int, default=3, help="training seeds 0..N-1 per grid point")
    p.add_argument("--split-seed", type=int, help="fix the labeled split's seed (default: split seed = training seed)")
    p.add_argument("--steps", type=int, help="override every run's step budget")
    p.add_argument("--preset", help="named paper settings for everything not varied")
    p.add_argument("--num-cpus", type=int, help="CPUs of the local Ray instance (default: this machine's)")
    p.add_argument("--results-dir", default="bench-results")
    p.add_argument("--data-root", help="folder with dataset files")
    p.add_argument("--address", help="Ray cluster address to join (default: RAY_ADDRESS, else a local Ray)")
    p.add_argument("--connect-timeout", type=float, default=DEFAULT_CONNECT_TIMEOUT_S, metavar="SECONDS",
                   help="give up (exit 2) when the cluster at --address does not answer in this time")
    p.add_argument("--plot", action="store_true", help="draw the figure (PNG and PDF) from the Parquet files")
    p.add_argument("--out", help="figure path without extension (default: RESULTS_DIR/figures/sensitivity-ID)")
    p.add_argument("--dry-run", action="store_true", help="list the runs and exit")
    return p


def grid_axes(algorithms: list[str], params: list[list[str]], values: list[list[float]]) -> dict[str, list[tuple[str, list]]]:
    """{algorithm: [(param, checked values), ...]} (one or two axes); UsageError on bad input."""
    import tune_spaces

    if len(params) != len(values):
        raise UsageError(f"give one --values per --param (got {len(params)} --param and {len(values)} --values)")
    if len(params) > 2:
        raise UsageError(f"at most two --param (a 2-D grid), got {len(params)}")
    out: dict[str, list[tuple[str, list]]] = {}
    for i, algo in enumerate(algorithms):
        try:
            space = tune_spaces.space_for(algo)
        except (ConfigError, ValueError) as e:
            raise UsageError(str(e)) from None
        axes = []
        for names, vals in zip(params, values):
            if len(names) not in (1, len(algorithms)):
                raise UsageError(f"--param {','.join(names)}: give one name, or one per method ({len(algorithms)})")
            name = names[0] if len(names) == 1 else names[i]
            if len(set(vals)) != len(vals):
                raise UsageError(f"--values for {name} repeat a value")
            try:
                axes.append((name, [tune_spaces.check_value(space, name, v) for v in vals]))
            except ConfigError as e:
                raise UsageError(str(e)) from None
        if len(axes) == 2 and axes[0][0] == axes[1][0]:
            raise UsageError(f"both --param name {axes[0][0]} for {algo}")
        out[algo] = axes
    return out


def study_id(spec: dict) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]


def plan(args: argparse.Namespace) -> tuple[list[RunConfig], RunEnv, dict]:
    """Validate and expand the grid; returns (configs, env, studies-table row)."""
    import datasets

    from .suites import RECIPES

    if args.seeds <= 0:
        raise UsageError(f"--seeds must be positive, got {args.seeds}")
    if len(set(args.algorithms)) != len(args.algorithms):
        raise UsageError("--algorithms repeats a method")
    axes = grid_axes(args.algorithms, args.param, args.values)
    if args.dataset not in datasets.list_datasets():
        raise UsageError(f"unknown dataset {args.dataset!r} (valid: {', '.join(datasets.list_datasets())})")
    labels = args.labels if args.labels is not None else RECIPES[args.dataset].labels[0]
    base, env = plan_runs(PlanRequest(
        suite="quick", algorithms=tuple(args.algorithms), datasets=(args.dataset,), labels=(labels,), seeds=args.seeds,
        split_seed=args.split_seed, preset=args.preset, steps=args.steps, results_dir=args.results_dir,
        data_root=args.data_root))
    spec = {"dataset": args.dataset, "n_labels": labels, "axes": axes, "seeds": args.seeds,
            "split_seed": args.split_seed, "steps": base[0].steps, "preset": args.preset or ""}
    sid = study_id(spec)
    suite = f"sensitivity:{sid}"
    configs = []
    for cfg in base:
        names = [n for n, _ in axes[cfg.algorithm]]
        for point in itertools.product(*[v for _, v in axes[cfg.algorithm]]):
            hp = {**cfg.hparams, **dict(zip(names, point))}
            note = f"{cfg.protocol_notes}; sensitivity study {sid}: " + ", ".join(f"{n}={v:g}" for n, v in zip(names, point))
            configs.append(dataclasses.replace(cfg, hparams=hp, suite=suite, protocol_notes=note))
    try:
        for c in configs:
            c.typed_hparams()
    except ConfigError as e:
        raise UsageError(str(e)) from None
    row = {"study_id": sid, "suite": suite, "dataset": args.dataset, "n_labels": labels,
           "algorithms_json": json.dumps(args.algorithms),
           "params_json": json.dumps({a: [n for n, _ in ax] for a, ax in axes.items()}),
           "values_json": json.dumps({a: [v for _, v in ax] for a, ax in axes.items()}),
           "seeds": args.seeds, "steps": base[0].steps, "run_ids_json": json.dumps([c.run_id for c in configs]),
           "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    return configs, env, row


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from results import ResultsDirError, ResultStore
    from results.plots import PlotError, format_sensitivity, plot_sensitivity, sensitivity_table
    from results.trials import SearchStore

    try:
        configs, env, row = plan(args)
        remote = bool(args.address or os.environ.get("RAY_ADDRESS"))
        if args.num_cpus is not None and args.num_cpus < 1:
            raise UsageError("--num-cpus must be at least 1")
        cpus = None if remote else (args.num_cpus or os.cpu_count() or 1)
        store = ResultStore(env.results_dir)
        finished = store.finished_run_ids() if store.exists() else set()
        if args.plot and not args.out and not store.storage.local:
            raise UsageError("--plot with a URI --results-dir needs --out (a local file name stem for the figure)")
        todo = [c for c in configs if c.run_id not in finished]
        if args.dry_run:
            for c in configs:
                hp = ", ".join(f"{k}={c.hparams[k]:g}" for k in json.loads(row["params_json"])[c.algorithm])
                print(f"{'done' if c.run_id in finished else 'todo'} {c.run_id} {c.algorithm} {hp} seed={c.seed}")
            return 0
        store.check_writable()
    except (UsageError, ResultsDirError) as e:
        fail(PROG, str(e))
    started = time.perf_counter()
    print(f"{PROG}: study {row['study_id']}: {len(configs)} runs, {len(configs) - len(todo)} already finished, "
          f"{len(todo)} to run; results in {env.results_dir}", flush=True)
    if todo:
        from . import ray_launch

        try:
            try:  # Ray first: nothing is written under the results directory before it is up
                resources = ray_launch.start_ray(args.address, cpus, connect_timeout=args.connect_timeout)
            except RayStartError as e:
                fail(PROG, str(e))
            # The study row before the runs: an interrupted study can still be plotted from those that finished.
            SearchStore(env.results_dir).write_study(row)
            ray_launch.run_grid(todo, env, name=f"sensitivity-{row['study_id']}",
                                max_concurrent=int(resources.get("CPU", 1)))
        except KeyboardInterrupt:
            ray_launch.stop_ray()
            interrupted(PROG, "finished runs are saved; run the same command again to do the missing ones")
        finally:
            ray_launch.stop_ray()
    else:
        SearchStore(env.results_dir).write_study(row)
    table = sensitivity_table(env.results_dir, row["study_id"])
    print()
    print(format_sensitivity(table))
    n_ok = int(table["n"].sum()) if len(table) else 0
    print(f"\n{n_ok} of {len(configs)} runs ok; study {row['study_id']}; wall time {time.perf_counter() - started:.0f} s")
    if args.plot:
        try:
            for p in plot_sensitivity(env.results_dir, row["study_id"], args.out):
                print(f"figure: {p}")
        except PlotError as e:
            fail(PROG, str(e))
    return 0 if n_ok == len(configs) else 1


if __name__ == "__main__":
    sys.exit(main())
