"""python -m bench.run: run a suite of SSL runs on Ray and print the summary table.

Every input is checked before Ray starts and before anything is written; bad input gets
one line on stderr and exit status 2. Finished runs (same config hash, status ok or
diverged) are skipped, so re-running a command only does what is missing.

A lost worker or node restarts its run from the run's last checkpoint (``--max-failures``
times); a re-run of a killed command resumes the runs that were in flight from theirs
(README, "Running on a cluster"; docs/ray.md).

Exit status: 0 every run finished (ok, or diverged: a result); 1 some run failed or is
missing (each is listed on stderr; rows that could not be written end with a line naming the
path and the cause); 2 bad input or no Ray (nothing written); 130 interrupted (Ctrl-C;
finished runs are kept, a re-run does the rest).
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import sys
import time

from algorithms import list_algorithms
from algorithms.networks import list_networks

from .cli_errors import UsageError, csv_list, fail, interrupted, make_parser
from .config import RunConfig, RunEnv
from .planner import DEFAULT_RESULTS, PlanRequest, make_plan, parse_hp_items
from .ray_node import DEFAULT_CONNECT_TIMEOUT_S
from .suites import SUITES

PROG = "bench.run"


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
                        "--hp meta_method=approx --hp threshold=0.9; applied after presets; old option names still work, with a warning")
    p.add_argument("--network", help="override the recipes' network (see --list)")
    p.add_argument("--steps", type=int, help="override every run's step budget (recorded as a protocol deviation)")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="bf16: the network's forward under bfloat16 autocast (float32 weights, gradients and losses); "
                        "recorded with each run and part of its identity (docs/benchmarks.md)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the student network (teachers and the evaluation EMA stay eager); recorded "
                        "with each run and part of its identity")
    p.add_argument("--channels-last", action="store_true",
                   help="networks in channels-last memory format (faster convolutions, float-rounding differences "
                        "only; recorded with each run, see docs/performance.md)")
    p.add_argument("--val-protocol", choices=["scarce", "paper"], default="scarce",
                   help="validation split: as scarce as the labels, or the papers' size (e.g. 5,000 for CIFAR)")
    p.add_argument("--workers", type=int, default=1, help="Ray Train data-parallel workers per run (global batch fixed)")
    p.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs per worker (0: CPU with gloo)")
    p.add_argument("--num-cpus", type=int, help="CPUs of the local Ray instance (default: this machine's)")
    p.add_argument("--results-dir", default=DEFAULT_RESULTS, help="where runs/, evals/ and checkpoints/ go: a local "
                   "or mounted path, or a URI as Ray's storage_path takes it (s3://bucket/prefix, gs://, abfs://, "
                   "file://); on a multi-node cluster every node must reach it")
    p.add_argument("--max-failures", type=int, default=3, metavar="N",
                   help="restart a run up to N times after a lost worker or node (Tune trials and Ray Train worker "
                        "groups), each time from its last checkpoint; then it is recorded as failed")
    p.add_argument("--checkpoint-every-min", type=float, default=10.0, metavar="MIN",
                   help="checkpoint each run after this many minutes of training (and at its last step); a resumed "
                        "run loses at most this much work; 0: after every step")
    p.add_argument("--keep-checkpoints", action="store_true",
                   help="keep each finished run's last checkpoint under checkpoints/ (default: deleted once its rows "
                        "are written)")
    p.add_argument("--log-to", type=csv_list(str), default=[], metavar="tensorboard[,mlflow]",
                   help="also log each run's validation metrics to TensorBoard (Ray's TBXLogger: event files under "
                        "RESULTS/ray/<experiment>) and/or MLflow (Ray's MLflow callback; MLFLOW_TRACKING_URI, "
                        "default RESULTS/mlruns); off by default")
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


def request_from_args(args: argparse.Namespace) -> PlanRequest:
    """The typed plan request of a parsed command line; UsageError for a malformed --hp."""
    tup = lambda v: tuple(v) if v else None  # noqa: E731
    return PlanRequest(suite=args.suite, algorithms=tup(args.algorithms), datasets=tup(args.datasets),
                       labels=tup(args.labels), seeds=args.seeds, split_seed=args.split_seed, preset=args.preset,
                       config_from=args.config_from, hp=parse_hp_items(args.hp), network=args.network,
                       steps=args.steps, val_protocol=args.val_protocol, workers=args.workers,
                       gpus_per_worker=args.gpus_per_worker, results_dir=args.results_dir,
                       data_root=args.data_root, download=args.download, protocols=tup(args.protocol),
                       allow_missing_presets=args.allow_missing_presets, dry_run=args.dry_run,
                       precision=args.precision, compile=args.compile, channels_last=args.channels_last)


def plan(args: argparse.Namespace) -> tuple[list[RunConfig], RunEnv]:
    """Validate everything that can be checked without Ray; UsageError on bad input."""
    plan_ = make_plan(request_from_args(args))
    if plan_.protocol_runs is not None:  # the dry run shows which paper tables each run belongs to
        args.protocol_runs = plan_.protocol_runs
    return plan_.configs, plan_.env


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


LOGGERS = ("tensorboard", "mlflow")


def run_env(args: argparse.Namespace, env: RunEnv) -> RunEnv:
    """The plan's environment with the fault-tolerance flags; UsageError on bad values."""
    if args.max_failures < 0:
        raise UsageError(f"--max-failures must be >= 0, got {args.max_failures}")
    if not args.checkpoint_every_min >= 0:
        raise UsageError(f"--checkpoint-every-min must be >= 0, got {args.checkpoint_every_min:g}")
    return dataclasses.replace(env, max_failures=args.max_failures, checkpoint_every_min=args.checkpoint_every_min,
                               keep_checkpoints=args.keep_checkpoints)


def logger_callbacks(names: list[str], env: RunEnv, experiment: str) -> list:
    """Ray Tune callbacks for ``--log-to`` (each trial's reports: validation metrics and
    progress only; the test set never reaches Tune); UsageError for an unknown name or a
    missing package."""
    unknown = [n for n in names if n not in LOGGERS]
    if unknown:
        raise UsageError(f"--log-to {','.join(unknown)}: unknown (valid: {', '.join(LOGGERS)})")
    out = []
    if "tensorboard" in names:
        if importlib.util.find_spec("tensorboardX") is None:
            raise UsageError("--log-to tensorboard needs tensorboardX (pip install tensorboardX)")
        from ray.tune.logger import TBXLoggerCallback

        out.append(TBXLoggerCallback())
    if "mlflow" in names:
        if importlib.util.find_spec("mlflow") is None:
            raise UsageError("--log-to mlflow needs mlflow (pip install mlflow-skinny)")
        from ray.air.integrations.mlflow import MLflowLoggerCallback

        from results.fs import Storage

        storage = Storage(env.results_dir)
        uri = os.environ.get("MLFLOW_TRACKING_URI") or (f"file://{storage.path('mlruns')}" if storage.local else None)
        if uri is None:
            raise UsageError("--log-to mlflow with a URI --results-dir needs MLFLOW_TRACKING_URI (an MLflow server)")
        out.append(MLflowLoggerCallback(tracking_uri=uri, experiment_name=experiment, save_artifact=False))
    return out


def _unique(configs: list[RunConfig]) -> list[RunConfig]:
    """One config per run id (a protocol's base run may also be a row of another table)."""
    seen: set[str] = set()
    return [c for c in configs if not (c.run_id in seen or seen.add(c.run_id))]


def _main(args: argparse.Namespace) -> int:
    from results import ResultsDirError, ResultStore, final_tables

    from .ray_node import RayStartError

    experiment = f"{args.suite}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    try:
        configs, env = plan(args)
        env = run_env(args, env)
        if not args.connect_timeout > 0:
            raise UsageError(f"--connect-timeout must be positive, got {args.connect_timeout:g}")
        callbacks = logger_callbacks(args.log_to, env, f"bench-{args.suite}")
        remote = bool(args.address or os.environ.get("RAY_ADDRESS"))
        cpus = None if remote else check_local_resources(args)
        store = ResultStore(env.results_dir)
        finished = store.finished_run_ids() if store.exists() else set()
        todo = _unique([c for c in configs if c.run_id not in finished])
        if args.dry_run:
            _print_plan(args, configs, finished)
            return 0
        if todo:
            store.check_writable()  # creates nothing: the folders appear with the first rows
    except (UsageError, ResultsDirError) as e:
        fail(PROG, str(e))

    started = time.perf_counter()
    print(f"{PROG}: suite {args.suite}: {len(configs)} runs, {len(configs) - len(todo)} already finished, "
          f"{len(todo)} to run; results in {store.root}", flush=True)
    write_errors: list[str] = []
    if todo:
        from . import ray_launch, ray_node

        try:
            try:
                resources = ray_launch.start_ray(args.address, cpus, connect_timeout=args.connect_timeout)
                if remote:
                    check_cluster_resources(args, resources)
                    print(f"{PROG}: joined the Ray cluster at {args.address or os.environ['RAY_ADDRESS']}: "
                          f"{resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs", flush=True)
                    note = ray_node.check_results_reachable(env.results_dir)
                    if note:
                        print(f"{PROG}: {note}", flush=True)
            except (UsageError, RayStartError) as e:
                fail(PROG, str(e))
            slots = int(resources.get("CPU", 1) // max(1, args.workers))
            if args.gpus_per_worker > 0:
                slots = min(slots, int(resources.get("GPU", 0) // (args.workers * args.gpus_per_worker)))
            outcome = ray_launch.run_grid(todo, env, name=experiment, max_concurrent=slots, callbacks=callbacks,
                                          keep_experiment="tensorboard" in args.log_to)
            write_errors = outcome.write_errors
            if "tensorboard" in args.log_to:
                from results.fs import Storage

                print(f"{PROG}: TensorBoard logs: tensorboard --logdir {Storage(env.results_dir).show('ray/' + experiment)}",
                      flush=True)
        except ResultsDirError as e:
            write_errors = [str(e)]
        finally:
            ray_launch.stop_ray()
    try:
        runs = store.load_runs([c.run_id for c in configs])
    except ResultsDirError as e:
        fail(PROG, str(e))
    print()
    print(final_tables(runs))
    wall = time.perf_counter() - started
    recorded = set(runs["run_id"]) if len(runs) else set()
    missing = [c for c in _unique(configs) if c.run_id not in recorded]
    print(f"\n{len(runs)} runs in the table ({len(missing)} missing), wall time {wall:.0f} s", flush=True)
    failed = runs[runs["status"] == "failed"] if len(runs) else runs
    for _, r in (runs[runs["status"] == "diverged"] if len(runs) else runs).iterrows():
        print(f"  diverged: {r['dataset']}/{r['n_labels']} {r['algorithm']} seed={r['seed']}: {r['error_message']}")
    if len(failed) or missing:
        print(f"{PROG}: {len(failed)} runs failed, {len(missing)} missing (a re-run of the same command retries them, "
              f"from their checkpoints):", file=sys.stderr)
        for _, r in failed.iterrows():
            print(f"  failed {r['run_id']} {r['dataset']}/{r['n_labels']} {r['algorithm']} seed={r['seed']} "
                  f"at step {r['steps_done']}/{r['steps']}: {r['error_message']}", file=sys.stderr)
        for c in missing:
            print(f"  missing {c.run_id} {c.dataset}/{c.n_labels} {c.algorithm} seed={c.seed}: no rows recorded",
                  file=sys.stderr)
        sys.stderr.flush()
    if write_errors:
        more = f" ({len(write_errors) - 1} more runs not recorded)" if len(write_errors) > 1 else ""
        print(f"{PROG}: error: {write_errors[0]}{more}; free the space or fix the folder, then run the same command "
              f"again to do the missing runs", file=sys.stderr, flush=True)
    return 1 if len(failed) or missing or write_errors else 0


if __name__ == "__main__":
    sys.exit(main())
