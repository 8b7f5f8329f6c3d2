"""python -m bench.figure: regenerate the papers' figures; each runs its study's missing runs, then draws.

A figure (``results/figures/``, see ``--list``) declares the runs it needs at two scales:
``cpu`` (offline data, minutes on 2 CPU cores; the default) and ``paper`` (the paper's dataset
and protocol, for a GPU cluster). The runs go through the planner and the same Ray grid as
``python -m bench.run``; finished runs (same config, same run id) are skipped, so figures
share runs with each other and with the suites, and a re-run only does what is missing. The
figure is drawn from the Parquet files alone (PNG with its caption in the metadata, PDF, and a
``.md`` caption beside them). ``all`` makes every figure this version can run.

Exit status: 0 every figure drawn from all its runs; 1 some runs are missing or failed (the
figures are drawn from the rest, the missing runs are listed); 2 bad input (nothing run or
written); 130 interrupted (finished runs are kept).
"""
from __future__ import annotations

import argparse
import os
import sys

from .cli_errors import UsageError, fail, interrupted, make_parser
from .planner import DEFAULT_RESULTS
from .ray_node import DEFAULT_CONNECT_TIMEOUT_S

PROG = "bench.figure"


def build_parser() -> argparse.ArgumentParser:
    p = make_parser(PROG, "bench.figure", __doc__.splitlines()[0])
    p.add_argument("names", nargs="*", metavar="NAME", help="figures to make (see --list), or 'all'")
    p.add_argument("--scale", choices=["cpu", "paper"], default="cpu",
                   help="cpu: offline data, minutes on 2 cores; paper: the paper's dataset and protocol (GPUs)")
    p.add_argument("--results-dir", default=DEFAULT_RESULTS, help="where runs/, evals/ and artifacts/ are read and written "
                   "(the default is bench.run's, so suite runs are reused)")
    p.add_argument("--data-root", help="folder with dataset files (the paper scale's CIFAR, SVHN)")
    p.add_argument("--download", action="store_true", help="let torchvision download missing datasets")
    p.add_argument("--out", help="folder for the figures (RESULTS_DIR/figures when not given)")
    p.add_argument("--list", action="store_true", help="list every figure: paper and number, what it shows, its scales")
    p.add_argument("--plot-only", action="store_true", help="draw from the results there are, run nothing; "
                   "list the runs that are missing")
    p.add_argument("--dry-run", action="store_true", help="list each figure's runs (done / todo) and the time estimate, "
                   "run nothing; needs no dataset files")
    p.add_argument("--workers", type=int, default=1, help="Ray Train data-parallel workers per run (paper scale)")
    p.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs per worker (0: CPU)")
    p.add_argument("--num-cpus", type=int, help="CPUs of the local Ray instance (this machine's when not given)")
    p.add_argument("--address", help="Ray cluster address to join (RAY_ADDRESS, else a local Ray, when not given)")
    p.add_argument("--connect-timeout", type=float, default=DEFAULT_CONNECT_TIMEOUT_S, metavar="SECONDS",
                   help="give up (exit 2) when the cluster at --address does not answer in this time")
    return p


def listing() -> str:
    """One block per figure: name, paper and number, what it shows, its scales or what it needs."""
    from results.figures import FIGURES

    lines = []
    for f in FIGURES.values():
        where = f"needs {f.needs}" if f.needs else "scales: " + ", ".join(f.studies)
        lines += [f"{f.name:<11} {f.paper} {f.number}: {f.title} [{where}]", f"{'':<11} {f.shows}"]
    return "\n".join(lines)


def select(names: list[str]) -> list:
    """The figures named (``all``: every one this version can run); UsageError on a bad name."""
    from results.figures import FIGURES, get_figure

    if not names:
        raise UsageError("name a figure, or all (python -m bench.figure --list shows them)")
    if "all" in names:
        if len(names) > 1:
            raise UsageError("'all' makes every figure: give it alone")
        return [f for f in FIGURES.values() if not f.needs]
    out = []
    for n in dict.fromkeys(names):
        try:
            f = get_figure(n)
        except KeyError as e:
            raise UsageError(e.args[0]) from None
        if f.needs:
            raise UsageError(f"figure {n} needs {f.needs}, which this version does not have")
        out.append(f)
    return out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.list:
        print(listing())
        return 0
    try:
        return _main(args)
    except KeyboardInterrupt:
        from . import ray_launch

        ray_launch.stop_ray()
        interrupted(PROG, "finished runs are saved; run the same command again to do the missing ones")


def _main(args: argparse.Namespace) -> int:
    from results import ResultsDirError

    from . import figure_run
    from .figure_plan import plan_figure, share_artifacts

    try:
        figures = select(args.names)
        if args.workers < 1:
            raise UsageError(f"--workers must be at least 1, got {args.workers}")
        if args.num_cpus is not None and args.num_cpus < 1:
            raise UsageError("--num-cpus must be at least 1")
        for f in figures:
            if args.scale not in f.studies:
                raise UsageError(f"figure {f.name} has no {args.scale} scale (it has: {', '.join(f.studies)})")
        common = dict(results_dir=args.results_dir, data_root=args.data_root, download=args.download,
                      workers=args.workers, gpus_per_worker=args.gpus_per_worker,
                      dry_run=args.dry_run or args.plot_only)
        plans = [plan_figure(f, args.scale, common) for f in figures]
        share_artifacts(plans)
        results_dir = os.path.abspath(args.results_dir)
        out = os.path.abspath(args.out) if args.out else os.path.join(results_dir, "figures")
        job = figure_run.Job(plans, args.scale, results_dir, out, args.data_root, args.download, args.gpus_per_worker)
        if args.dry_run:
            return figure_run.dry_run(job)
        if args.plot_only:
            return figure_run.plot_only(job)
        job.check(os.path.abspath(args.out) if args.out else None)
    except (UsageError, ResultsDirError) as e:
        fail(PROG, str(e))
    return figure_run.run(job, args.address, args.num_cpus, args.connect_timeout)


if __name__ == "__main__":
    sys.exit(main())
