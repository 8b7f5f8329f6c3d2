"""python -m bench.run: run a suite of SSL runs on Ray and print the summary table.

Every input is checked before Ray starts and before anything is written; bad input gets
one line on stderr and exit status 2. Finished runs (same config hash, status ok or
diverged) are skipped, so re-running a command only does what is missing.

Exit status: 0 every run is in the table; 1 some are missing (crashed, or their rows could
not be written: the last line names the path and the cause); 2 bad input or no Ray
(nothing written); 130 interrupted (Ctrl-C; finished runs are kept, a re-run does the rest).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

from algorithms import ConfigError, get_algorithm, list_algorithms
from algorithms.networks import check_network, list_networks

from .cli_errors import UsageError, csv_list, fail, interrupted, make_parser
from .config import RunConfig, RunEnv
from .ray_node import DEFAULT_CONNECT_TIMEOUT_S
from .suites import SUITES, expand

PROG = "bench.run"
DEFAULT_RESULTS = "bench-results"


def build_parser() -> argparse.ArgumentParser:
    p = make_parser(PROG, "bench.run", __doc__.splitlines()[0])
    p.add_argument("--suite", default="quick",
                   help="named suite: " + "; ".join(f"{s.name}: {s.description}" for s in SUITES.values()))
    p.add_argument("--algorithms", type=csv_list(str), help="comma-separated algorithms (default: the suite's, i.e. every registered one)")
    p.add_argument("--datasets", type=csv_list(str), help="comma-separated datasets (default: the suite's); others use their recipe")
    p.add_argument("--labels", type=csv_list(int), help="comma-separated numbers of labeled examples (default: the recipe's)")
    p.add_argument("--seeds", type=int, help="number of training seeds 0..N-1 (default: the suite's)")
    p.add_argument("--split-seed", type=int, help="fix the labeled split's seed (default: split seed = training seed)")
    p.add_argument("--preset", help="apply a preset family's paper settings where defined for (algorithm, dataset); "
                   "BASE+RULE gets its base's entry, then its rule's; see python -m bench.presets")
    p.add_argument("--config-from", metavar="SEARCH_ID", help="use the best hyperparameters of a finished "
                   "python -m bench.tune search (from --results-dir) for its algorithm; recorded as preset search:ID")
    p.add_argument("--hp", action="append", default=[], metavar="KEY=VALUE",
                   help="set a hyperparameter of every selected algorithm that has it (repeatable), e.g. "
                        "--hp l2i_variant=approx --hp threshold=0.9; applied after presets")
    p.add_argument("--network", help="override the recipes' network (see --list)")
    p.add_argument("--steps", type=int, help="override every run's step budget (recorded as a protocol deviation)")
    p.add_argument("--val-protocol", choices=["scarce", "paper"], default="scarce",
                   help="validation split: as scarce as the labels, or the papers' size (e.g. 5,000 for CIFAR)")
    p.add_argument("--workers", type=int, default=1, help="Ray Train data-parallel workers per run (global batch fixed)")
    p.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs per worker (0: CPU with gloo)")
    p.add_argument("--num-cpus", type=int, help="CPUs of the local Ray instance (default: this machine's)")
    p.add_argument("--results-dir", default=DEFAULT_RESULTS, help="where runs/ and evals/ Parquet files go")
    p.add_argument("--data-root", help="folder with dataset files (CIFAR, SVHN, STL-10, Fashion-MNIST)")
    p.add_argument("--download", action="store_true", help="let torchvision download missing datasets (needs internet)")
    p.add_argument("--address", help="Ray cluster address to join (default: RAY_ADDRESS, else a local Ray bound to "
                   "127.0.0.1 with token authentication)")
    p.add_argument("--connect-timeout", type=float, default=DEFAULT_CONNECT_TIMEOUT_S, metavar="SECONDS",
                   help="give up (exit 2, nothing written) when the cluster at --address does not answer in this time")
    p.add_argument("--protocol", type=csv_list(str), metavar="NAME[,NAME]",
                   help="run these paper tables (see --list), each with its preset family; --suite full runs them all")
    p.add_argument("--allow-missing-presets", action="store_true",
                   help="run protocol cells that have no preset with the dataset's recipe (recorded in the preset field "
                        "and protocol_notes) instead of refusing them")
    p.add_argument("--dry-run", action="store_true", help="list the runs (and which are finished) on stdout, the total "
                   "steps and estimated GPU-hours per network and protocol on stderr, and exit; needs no dataset files")
    p.add_argument("--json", action="store_true", help="with --dry-run: one JSON object per run on stdout (kind "
                   "'run': protocols, resolved config, finished, est_gpu_hours) and the totals as JSON on stderr "
                   "(kinds 'network', 'protocol', 'total')")
    p.add_argument("--list", action="store_true", help="list suites, algorithms, datasets and networks and exit")
    return p


def _listing() -> str:
    import datasets

    from .suites import protocol_listing

    return "\n".join([
        "suites:     " + ", ".join(SUITES), "algorithms: " + ", ".join(list_algorithms()),
        "datasets:   " + ", ".join(datasets.list_datasets()), "networks:   " + ", ".join(list_networks()),
        protocol_listing()])


def plan(args: argparse.Namespace) -> tuple[list[RunConfig], RunEnv]:
    """Validate everything that can be checked without Ray; UsageError on bad input."""
    import datasets

    if args.suite not in SUITES:
        raise UsageError(f"unknown suite {args.suite!r} (valid: {', '.join(SUITES)})")
    for algo in args.algorithms or []:
        try:
            get_algorithm(algo)  # also composes BASE+RULE and says why a pair is refused
        except ConfigError as e:
            raise UsageError(str(e)) from None
    for d in args.datasets or []:
        if d not in datasets.list_datasets():
            raise UsageError(f"unknown dataset {d!r} (valid: {', '.join(datasets.list_datasets())})")
    from . import presets

    if args.preset is not None and args.preset not in presets.preset_names():
        raise UsageError(f"unknown preset {args.preset!r} (valid: {', '.join(presets.preset_names())})")
    if args.network is not None and args.network not in list_networks():
        raise UsageError(f"unknown network {args.network!r} (valid: {', '.join(list_networks())})")
    if args.steps is not None and args.steps <= 0:
        raise UsageError(f"--steps must be positive, got {args.steps}")
    if args.seeds is not None and args.seeds <= 0:
        raise UsageError(f"--seeds must be positive, got {args.seeds}")
    if args.split_seed is not None and args.split_seed < 0:
        raise UsageError(f"--split-seed must be non-negative, got {args.split_seed}")
    if args.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {args.workers}")
    if args.gpus_per_worker < 0:
        raise UsageError("--gpus-per-worker must be >= 0")
    for n in args.labels or []:
        if n <= 0:
            raise UsageError(f"--labels must be positive, got {n}")
    try:
        if _protocol_mode(args):
            configs = _protocol_configs(args)
        else:
            configs = expand(SUITES[args.suite], algorithms=args.algorithms, datasets=args.datasets, labels=args.labels,
                             seeds=args.seeds, split_seed=args.split_seed, steps=args.steps, workers=args.workers,
                             network=args.network, val_protocol=args.val_protocol)
        if args.preset:
            configs = [presets.apply(c, args.preset) for c in configs]
            if args.network or args.steps:  # explicit flags win over the preset
                configs = [dataclasses.replace(c, **{k: v for k, v in (("network", args.network), ("steps", args.steps),
                                                                       ("eval_every", min(c.eval_every, args.steps or c.eval_every)))
                                                     if v is not None}) for c in configs]
        if getattr(args, "config_from", None):
            configs = _apply_search(configs, args.config_from, args.results_dir)
        if args.hp:
            configs = _apply_hp(configs, args.hp)
        for cfg in configs:
            cfg.typed_hparams()
    except ConfigError as e:
        raise UsageError(str(e)) from None
    checked: set = set()
    for cfg in configs:
        key = (cfg.dataset, cfg.n_labels, cfg.network)
        if key in checked:
            continue
        checked.add(key)
        info = datasets.get_info(cfg.dataset)
        try:
            n_val = datasets.resolve_n_val(info, cfg.n_labels, cfg.val_protocol, cfg.n_val)
            datasets.validate_request(info, cfg.n_labels, n_val)
            check_network(cfg.network, info.input_shape)
        except (datasets.SplitError, ValueError) as e:
            raise UsageError(str(e)) from None
    for d in sorted({c.dataset for c in configs}) if not getattr(args, "dry_run", False) else ():  # plans need no files
        try:
            datasets.check_available(d, args.data_root, args.download)
        except datasets.DatasetUnavailable as e:
            raise UsageError(str(e)) from None
    env = RunEnv(results_dir=os.path.abspath(args.results_dir),
                 data_root=os.path.abspath(args.data_root) if args.data_root else None,
                 download=args.download, gpus_per_worker=args.gpus_per_worker)
    return configs, env


def _protocol_mode(args: argparse.Namespace) -> bool:
    """Paper protocols run for --protocol and for --suite full (the papers' tables)."""
    if getattr(args, "protocol", None) and args.suite not in ("quick", "full"):
        raise UsageError(f"--protocol runs paper tables of the full suite; it does not combine with --suite {args.suite}")
    return bool(getattr(args, "protocol", None)) or args.suite == "full"


def _protocol_configs(args: argparse.Namespace) -> list[RunConfig]:
    """The protocols' runs (bench.protocols), the CLI's overrides applied and recorded; their
    protocol memberships are kept on ``args.protocol_runs`` for the dry run."""
    from . import protocols

    if args.preset is not None:
        raise UsageError("--preset does not combine with paper protocols: each protocol names its preset family "
                         "(see --list)")
    runs = protocols.expand(args.protocol, seeds=args.seeds, split_seed=args.split_seed, workers=args.workers,
                            val_protocol=args.val_protocol, allow_missing_presets=args.allow_missing_presets,
                            algorithms=args.algorithms, datasets=args.datasets, labels=args.labels)
    runs = [dataclasses.replace(r, config=protocols.with_overrides(r.config, steps=args.steps, network=args.network))
            for r in runs]
    args.protocol_runs = runs
    return [r.config for r in runs]


def _parse_value(text: str):
    """'0.5' -> 0.5, '3' -> 3, 'true' -> True, anything else stays a string."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _apply_hp(configs: list[RunConfig], items: list[str]) -> list[RunConfig]:
    """--hp KEY=VALUE on every config whose algorithm has KEY; UsageError if none has it."""
    from algorithms import get_algorithm

    values = {}
    for item in items:
        key, eq, raw = item.partition("=")
        if not eq or not key:
            raise UsageError(f"--hp expects KEY=VALUE, got {item!r}")
        values[key] = _parse_value(raw)
    fields = {c.algorithm: {f.name for f in dataclasses.fields(get_algorithm(c.algorithm).Hparams)} for c in configs}
    for key in values:
        if not any(key in f for f in fields.values()):
            raise UsageError(f"--hp {key}: no selected algorithm has this hyperparameter "
                             f"(algorithms: {', '.join(sorted(fields))})")
    return [dataclasses.replace(c, hparams={**c.hparams, **{k: v for k, v in values.items() if k in fields[c.algorithm]}})
            for c in configs]


def _apply_search(configs: list[RunConfig], search_id: str, results_dir: str) -> list[RunConfig]:
    """Configs of the search's algorithm with its best hyperparameters (python -m bench.tune)."""
    import json

    from results.trials import SearchStore

    row = SearchStore(results_dir).search(search_id)
    if row is None:
        raise UsageError(f"--config-from: no finished search {search_id!r} under {os.path.abspath(results_dir)}")
    params = json.loads(row["best_params_json"])
    if not any(c.algorithm == row["algorithm"] for c in configs):
        raise UsageError(f"--config-from: search {search_id} tuned {row['algorithm']}, which this command does not run")
    note = (f"; hyperparameters {json.dumps(params, sort_keys=True)} from search {search_id} ({row['dataset']}/"
            f"{row['n_labels']}, {row['steps']} steps, {row['trials']} trials, validation error "
            f"{100 * row['best_val_error']:.2f}%)")
    return [dataclasses.replace(c, hparams={**c.hparams, **params}, protocol_notes=c.protocol_notes + note,
                                preset=f"{c.preset}+search:{search_id}" if c.preset else f"search:{search_id}")
            if c.algorithm == row["algorithm"] else c for c in configs]


def check_local_resources(args: argparse.Namespace) -> int:
    """CPUs for the local Ray; UsageError if a run asks for more workers/GPUs than exist."""
    cpus = args.num_cpus or os.cpu_count() or 1
    if args.num_cpus is not None and args.num_cpus < 1:
        raise UsageError("--num-cpus must be at least 1")
    if args.workers > cpus:
        raise UsageError(f"--workers {args.workers} needs {args.workers} CPUs but this machine gives Ray {cpus}")
    if args.gpus_per_worker > 0:
        import torch

        have = torch.cuda.device_count()
        if args.workers * args.gpus_per_worker > have:
            raise UsageError(f"--workers {args.workers} x --gpus-per-worker {args.gpus_per_worker} needs "
                             f"{args.workers * args.gpus_per_worker:g} GPUs but this machine has {have}")
    return cpus


def check_cluster_resources(args: argparse.Namespace, resources: dict) -> None:
    cpus, gpus = resources.get("CPU", 0), resources.get("GPU", 0)
    if args.workers > cpus:
        raise UsageError(f"--workers {args.workers} needs {args.workers} CPUs but the cluster has {cpus:g}")
    if args.workers * args.gpus_per_worker > gpus:
        raise UsageError(f"--workers {args.workers} x --gpus-per-worker {args.gpus_per_worker:g} needs more GPUs "
                         f"than the cluster's {gpus:g}")


def _print_plan(args: argparse.Namespace, configs: list[RunConfig], finished: set[str]) -> None:
    """The dry run: each run (a line, or a JSON object with --json), then the totals."""
    import json

    from . import protocol_plan

    runs = getattr(args, "protocol_runs", None)
    if runs is not None:  # --hp / --config-from may have changed the configs after expansion
        runs = [dataclasses.replace(r, config=c) for r, c in zip(runs, configs)]
    entries = protocol_plan.plan(runs if runs is not None else configs, finished)
    # stdout: the runs only (scripts read it); stderr: the totals (for the person planning)
    if args.json:
        for e in entries:
            print(json.dumps(e, sort_keys=True, default=str))
        totals = protocol_plan.network_totals(entries) + protocol_plan.protocol_totals(entries)
        for obj in totals + [protocol_plan.grand_total(entries)]:
            print(json.dumps(obj, sort_keys=True, default=str), file=sys.stderr)
        return
    for e in entries:
        where = f" [{','.join(e['protocols'])}]" if e["protocols"] else ""
        print(f"{'done' if e['finished'] else 'todo'} {e['run_id']} {e['dataset']}/{e['n_labels']} {e['algorithm']} "
              f"{e['network']} seed={e['seed']} split_seed={e['split_seed']} steps={e['steps']} "
              f"preset={e['preset'] or '-'}{where}")
    print(protocol_plan.format_summary(entries), file=sys.stderr)


RESUME_HINT = "finished runs are saved; run the same command again to do the missing ones"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.list:
        print(_listing())
        return 0
    try:
        return _main(args)
    except KeyboardInterrupt:
        interrupted(PROG, RESUME_HINT)


def _main(args: argparse.Namespace) -> int:
    from results import ResultsDirError, ResultStore, format_table, summarize

    from .ray_node import RayStartError

    try:
        configs, env = plan(args)
        if not args.connect_timeout > 0:
            raise UsageError(f"--connect-timeout must be positive, got {args.connect_timeout:g}")
        remote = bool(args.address or os.environ.get("RAY_ADDRESS"))
        cpus = None if remote else check_local_resources(args)
        store = ResultStore(env.results_dir)
        finished = store.finished_run_ids() if os.path.isdir(env.results_dir) else set()
        todo = [c for c in configs if c.run_id not in finished]
        if args.dry_run:
            _print_plan(args, configs, finished)
            return 0
        if todo:
            store.check_writable()  # creates nothing: the folders appear with the first rows
    except (UsageError, ResultsDirError) as e:
        fail(PROG, str(e))

    started = time.perf_counter()
    print(f"{PROG}: suite {args.suite}: {len(configs)} runs, {len(configs) - len(todo)} already finished, "
          f"{len(todo)} to run; results in {env.results_dir}", flush=True)
    write_errors: list[str] = []
    if todo:
        from . import ray_launch

        try:
            try:
                resources = ray_launch.start_ray(args.address, cpus, connect_timeout=args.connect_timeout)
                if remote:
                    check_cluster_resources(args, resources)
            except (UsageError, RayStartError) as e:
                fail(PROG, str(e))
            slots = int(resources.get("CPU", 1) // max(1, args.workers))
            if args.gpus_per_worker > 0:
                slots = min(slots, int(resources.get("GPU", 0) // (args.workers * args.gpus_per_worker)))
            outcome = ray_launch.run_grid(todo, env, name=f"{args.suite}-{time.strftime('%Y%m%d-%H%M%S')}",
                                          max_concurrent=slots)
            write_errors = outcome.write_errors
        except ResultsDirError as e:
            write_errors = [str(e)]
        finally:
            ray_launch.stop_ray()
    try:
        runs = store.load_runs([c.run_id for c in configs])
    except ResultsDirError as e:
        fail(PROG, str(e))
    missing = len(configs) - len(runs)
    print()
    print(format_table(summarize(runs)))
    wall = time.perf_counter() - started
    print(f"\n{len(runs)} runs in the table ({missing} missing), wall time {wall:.0f} s", flush=True)
    bad = runs[runs["status"] != "ok"] if len(runs) else runs
    for _, r in bad.iterrows():
        print(f"  {r['status']}: {r['dataset']}/{r['n_labels']} {r['algorithm']} seed={r['seed']}: {r['error_message']}")
    if write_errors:
        more = f" ({len(write_errors) - 1} more runs not recorded)" if len(write_errors) > 1 else ""
        print(f"{PROG}: error: {write_errors[0]}{more}; free the space or fix the folder, then run the same command "
              f"again to do the missing runs", file=sys.stderr, flush=True)
    return 1 if missing or write_errors else 0


if __name__ == "__main__":
    sys.exit(main())
