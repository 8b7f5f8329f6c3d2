"""The command line of ``python -m bench.tune`` (see the package docstring)."""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

from algorithms import ConfigError

from ..cli_errors import UsageError, csv_list, fail, interrupted, make_parser
from ..config import RunEnv
from ..ray_node import DEFAULT_CONNECT_TIMEOUT_S, RayStartError
from .progress import fmt
from .search import check_resources, load_spec, run_search, spec_from_args
from .summary import best_trial, final_configs, format_search, summarize_search

PROG = "bench.tune"
DESCRIPTION = "search a method's hyperparameters on the scarce validation split (Ray Tune + Optuna TPE + ASHA)"


def build_parser() -> argparse.ArgumentParser:
    p = make_parser(PROG, "bench.tune", DESCRIPTION)
    p.add_argument("--algorithm", help="method to tune (a base method or BASE+RULE)")
    p.add_argument("--dataset", default="digits", help="dataset (its quick-suite recipe; full recipes for paper datasets)")
    p.add_argument("--labels", type=int, help="number of labeled examples (default: the recipe's first)")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the labeled/validation split searched on")
    p.add_argument("--trials", type=int, default=8, help="number of trials (configurations) to try")
    p.add_argument("--steps", type=int, help="step budget of each trial and final run (default: the recipe's)")
    p.add_argument("--params", type=csv_list(str), help="search only these hyperparameters (default: every one in the space)")
    p.add_argument("--seed", type=int, default=0, help="seed of Optuna's TPE sampler (same seed: same proposals)")
    p.add_argument("--scheduler", choices=["asha", "fifo"], default="asha",
                   help="asha: stop trials behind at 1/4 and 1/2 of the budget; fifo: run every trial to the end")
    p.add_argument("--concurrency", type=int, help="trials at once (default: as many as the CPUs allow)")
    p.add_argument("--final-seeds", type=int, default=3, help="training seeds the best configuration is re-run on")
    p.add_argument("--preset", help="start from named paper settings (see python -m bench.presets)")
    p.add_argument("--workers", type=int, default=1, help="Ray Train workers per trial (1: a plain Tune trial)")
    p.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs per worker of every trial (0: CPU with gloo)")
    p.add_argument("--num-cpus", type=int, help="CPUs of the local Ray instance (default: this machine's)")
    p.add_argument("--results-dir", default="bench-results", help="where the Parquet tables and Tune state go")
    p.add_argument("--data-root", help="folder with dataset files")
    p.add_argument("--resume", metavar="SEARCH_ID", help="resume (or show) this search; other search flags must be omitted")
    p.add_argument("--address", help="Ray cluster address to join (default: RAY_ADDRESS, else a local Ray)")
    p.add_argument("--connect-timeout", type=float, default=DEFAULT_CONNECT_TIMEOUT_S, metavar="SECONDS",
                   help="give up (exit 2) when the cluster at --address does not answer in this time")
    p.add_argument("--show-space", action="store_true", help="print the algorithm's search space and exit")
    return p


_SEARCH_FLAGS = ("algorithm", "dataset", "split_seed", "labels", "trials", "steps", "params", "seed", "scheduler", "preset", "workers")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from results import ResultsDirError, ResultStore
    from results.trials import SearchStore

    try:
        if args.show_space:
            import tune_spaces

            if args.algorithm is None:
                raise UsageError("--show-space needs --algorithm")
            try:
                space = tune_spaces.space_for(args.algorithm)
            except ConfigError as e:
                raise UsageError(str(e)) from None
            print(tune_spaces.describe(space) or "(no searchable hyperparameters)")
            print(f"#HPs in the papers: {space.paper_hps if space.paper_hps is not None else 'n/a'}")
            return 0
        from results.fs import is_local

        if not is_local(args.results_dir):
            raise UsageError("bench.tune keeps its search state in files beside the results: --results-dir must be "
                             "a local or mounted path (URIs: bench.run and bench.sensitivity)")
        if args.resume:
            given = [f"--{k.replace('_', '-')}" for k in _SEARCH_FLAGS
                     if getattr(args, k) != build_parser().get_default(k)]
            if given:
                raise UsageError(f"--resume takes the search's own settings; drop {', '.join(given)}")
            spec = load_spec(args.results_dir, args.resume)
            if args.gpus_per_worker < 0:
                raise UsageError("--gpus-per-worker must be >= 0")
            env = RunEnv(results_dir=os.path.abspath(args.results_dir),
                         data_root=os.path.abspath(args.data_root) if args.data_root else None,
                         gpus_per_worker=args.gpus_per_worker)
        else:
            spec, env = spec_from_args(args)
        remote = bool(args.address or os.environ.get("RAY_ADDRESS"))
        if args.num_cpus is not None and args.num_cpus < 1:
            raise UsageError("--num-cpus must be at least 1")
        workers = spec.base_run["workers"]
        local_cpus = args.num_cpus or os.cpu_count() or 1
        if not remote:
            local_gpus = _local_gpus() if env.gpus_per_worker > 0 else 0
            slots = check_resources(workers, local_cpus, "this machine", env.gpus_per_worker, local_gpus)
        search_id = spec.search_id
        sstore = SearchStore(env.results_dir)
        finished = sstore.search(search_id)
        if finished is None:
            ResultStore(env.results_dir).check_writable()
    except (UsageError, ResultsDirError) as e:
        fail(PROG, str(e))

    if finished is not None and finished["final_seeds"] >= args.final_seeds:
        print(f"{PROG}: search {search_id} already finished")
        print(format_search(finished))
        return 0
    started = time.perf_counter()
    names = ", ".join(spec.space)
    print(f"{PROG}: search {search_id}: {spec.algorithm} on {spec.base_run['dataset']}/{spec.base_run['n_labels']}, "
          f"{spec.trials} trials over {names}, {spec.base_run['steps']} steps each; results in {env.results_dir}",
          flush=True)
    from .. import ray_launch

    try:
        try:  # Ray first: nothing is written under the results directory before it is up
            resources = ray_launch.start_ray(args.address, None if remote else local_cpus,
                                             None if remote or env.gpus_per_worker <= 0 else local_gpus,
                                             connect_timeout=args.connect_timeout)
        except RayStartError as e:
            fail(PROG, str(e))
        tune_dir = os.path.join(env.results_dir, "tune", search_id)
        os.makedirs(tune_dir, exist_ok=True)
        with open(os.path.join(tune_dir, "spec.json"), "w") as f:
            json.dump(dataclasses.asdict(spec), f, sort_keys=True, indent=1, default=str)
        cpus = resources.get("CPU", 0)
        try:
            slots = check_resources(workers, cpus, "the cluster", env.gpus_per_worker, resources.get("GPU", 0))
        except UsageError as e:
            fail(PROG, str(e))
        concurrency = min(args.concurrency or slots, slots, spec.trials)
        if args.concurrency and args.concurrency > slots:
            print(f"{PROG}: --concurrency {args.concurrency} capped to {slots} (CPUs {cpus:g}, {workers} per trial)")
        complete = run_search(spec, env, concurrency)
        if not complete:
            print(f"{PROG}: search {search_id} interrupted; run the same command (or --resume {search_id}) "
                  f"to finish it", file=sys.stderr, flush=True)
            return 130
        trials = sstore.load_trials([search_id])
        if not trials["val_error"].notna().any():
            print(f"{PROG}: every trial of search {search_id} errored (see the trial logs under {env.results_dir}/tune/"
                  f"{search_id}); nothing to re-run", file=sys.stderr, flush=True)
            return 1
        best = best_trial(trials)
        params = json.loads(best["params_json"])
        finals = final_configs(spec, params, args.final_seeds)
        done = ResultStore(env.results_dir).finished_run_ids()
        todo = [c for c in finals if c.run_id not in done]
        print(f"{PROG}: best trial {best['trial_id']} ({', '.join(f'{k}={fmt(v)}' for k, v in params.items())}, "
              f"val err {100 * best['val_error']:.2f}%); {len(finals)} final runs, {len(todo)} to train", flush=True)
        if todo:
            ray_launch.run_grid(todo, env, name=f"{search_id}-final", max_concurrent=slots)
    except KeyboardInterrupt:
        ray_launch.stop_ray()
        interrupted(PROG, f"run the same command (or --resume {search_id}) to finish the search")
    finally:
        ray_launch.stop_ray()
    row = summarize_search(spec, env, args.final_seeds)
    sstore.write_search(row)
    print()
    print(format_search(row))
    print(f"wall time {time.perf_counter() - started:.0f} s")
    return 0



def _local_gpus() -> int:
    import torch

    return torch.cuda.device_count()
