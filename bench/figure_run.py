"""bench.figure's work: list a plan, draw from what there is, or run each study's missing runs
through Ray (one grid per figure, Ray started once) and draw each figure as its study ends."""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

from .cli_errors import UsageError, fail
from .figure_cost import cpu_wall, estimate, format_seconds
from .figure_plan import PlannedFigure, ResultsState, describe, describe_groups, results_state

PROG = "bench.figure"
MAX_LISTED = 12  # groups of missing runs named per figure; the rest are counted


@dataclass
class Job:
    plans: list[PlannedFigure]
    scale: str
    results_dir: str
    out: str
    data_root: str | None
    download: bool
    gpus_per_worker: float

    def all_configs(self) -> list:
        seen: dict = {}
        for p in self.plans:
            for c in p.configs:
                seen.setdefault(c.run_id, c)
        return list(seen.values())

    def state(self) -> ResultsState:
        return results_state(self.results_dir, self.all_configs())

    def check(self, out: str | None) -> None:
        """The results directory and the figure folder are writable (creates nothing)."""
        from results import ResultStore

        ResultStore(self.results_dir).check_writable()
        if out is not None:
            ResultStore(out).check_writable()


def _planned(plan: PlannedFigure) -> list[dict]:
    return [dict(c.resolved().to_dict(), run_id=c.run_id) for c in plan.configs]


def _missing_lines(plan: PlannedFigure, state: ResultsState) -> list[str]:
    groups = describe_groups([c for c in plan.configs if state.missing(c)], plan.changes)
    lines = [f"  missing: {g}" for g in groups[:MAX_LISTED]]
    if len(groups) > MAX_LISTED:
        lines.append(f"  ... and {len(groups) - MAX_LISTED} more groups")
    return lines


def dry_run(job: Job) -> int:
    """Each figure's runs (done / todo) on stdout, the estimates on stderr."""
    state = job.state()
    gpu = job.scale == "paper"
    for p in job.plans:
        todo = [c for c in p.configs if state.missing(c)]
        print(f"{p.figure.name} ({p.figure.paper.split(' ')[0]} {p.figure.number}): {len(p.configs)} runs, "
              f"{len(todo)} to run")
        for c in p.configs:
            print(f"  {'todo' if state.missing(c) else 'done'} {describe(c, p.changes.get(c.run_id, ''))}")
        print(f"{p.figure.name}: {estimate(todo, os.cpu_count() or 1, gpu)}", file=sys.stderr)
    if len(job.plans) > 1:  # a run two figures share is run once
        todo = [c for c in job.all_configs() if state.missing(c)]
        print(f"together: {len(job.all_configs())} distinct runs, {len(todo)} to run, "
              f"{estimate(todo, os.cpu_count() or 1, gpu)}", file=sys.stderr)
    return 0


def draw_one(job: Job, plan: PlannedFigure, state: ResultsState) -> tuple[list[str], list[str]]:
    """(written paths, missing-run lines) of one figure; no paths when there is nothing to draw."""
    from results.figures import NothingToDraw
    from results.figures.draw import draw, load_data

    lines = _missing_lines(plan, state)
    try:
        paths = draw(plan.figure, plan.study, load_data(job.results_dir, job.scale, _planned(plan)), job.out)
    except NothingToDraw as e:
        return [], [f"  nothing to draw: {e}"] + lines
    return paths, lines


def plot_only(job: Job) -> int:
    """Draw every figure from the results there are; list what is missing (exit 1 if anything is)."""
    state = job.state()
    incomplete = False
    for p in job.plans:
        paths, lines = draw_one(job, p, state)
        head = f"{PROG}: {p.figure.name}: "
        if paths:
            print(head + f"drawn: {paths[0]}" + (f" ({len(lines)} missing-run lines below)" if lines else ""))
        else:
            print(head + "not drawn", file=sys.stderr)
        if lines:
            incomplete = True
            n = sum(1 for c in p.configs if state.missing(c))
            print(f"{head}{n} of {len(p.configs)} runs missing (python -m bench.figure "
                  f"{p.figure.name} --scale {job.scale} runs them):", file=sys.stderr)
            print("\n".join(lines), file=sys.stderr)
    return 1 if incomplete else 0


def run(job: Job, address: str | None, num_cpus: int | None, connect_timeout: float) -> int:
    """Run every figure's missing runs, figure by figure, drawing each as soon as its runs are in."""
    from results import ResultsDirError

    from . import ray_launch
    from .ray_node import RayStartError

    started = time.perf_counter()
    state = job.state()
    todo_all = [c for c in job.all_configs() if state.missing(c)]
    remote = bool(address or os.environ.get("RAY_ADDRESS"))
    cpus = None if remote else (num_cpus or os.cpu_count() or 1)
    slots = cpus or 1
    print(f"{PROG}: {len(job.plans)} figure(s) at the {job.scale} scale: {len(job.all_configs())} runs, "
          f"{len(todo_all)} to run, {estimate(todo_all, slots, job.scale == 'paper')}; results in {job.results_dir}, "
          f"figures in {job.out}", flush=True)
    done: set[str] = set()
    ray_up = False
    report, incomplete = [], False
    planned_s = spent_s = 0.0
    try:
        for i, p in enumerate(job.plans, 1):
            t0 = time.perf_counter()
            todo = [c for c in p.configs if state.missing(c) and c.run_id not in done]
            est = cpu_wall(todo, slots) if job.scale == "cpu" else None
            left = cpu_wall([c for c in todo_all if c.run_id not in done], slots) if job.scale == "cpu" else None
            eta = "" if left is None else f"; all figures: about {format_seconds(left * _rate(planned_s, spent_s))} left"
            print(f"\n[{i}/{len(job.plans)}] {p.figure.name} ({p.figure.paper.split(' ')[0]} {p.figure.number}, "
                  f"{p.figure.title}): {len(p.configs)} runs, {len(p.configs) - len(todo)} finished, {len(todo)} to run"
                  f" ({estimate(todo, slots, job.scale == 'paper')}){eta}", flush=True)
            if todo:
                if not ray_up:
                    try:
                        resources = ray_launch.start_ray(address, cpus, connect_timeout=connect_timeout)
                    except (UsageError, RayStartError) as e:
                        fail(PROG, str(e))
                    ray_up = True
                    slots = max(1, int(resources.get("CPU", 1)))
                    if job.gpus_per_worker > 0:
                        slots = min(slots, int(resources.get("GPU", 0) // job.gpus_per_worker) or 1)
                try:
                    outcome = ray_launch.run_grid(todo, ray_env(job), name=f"figure-{p.figure.name}-"
                                                  f"{time.strftime('%Y%m%d-%H%M%S')}", max_concurrent=slots)
                    for e in outcome.write_errors:
                        print(f"{PROG}: error: {e}", file=sys.stderr, flush=True)
                except ResultsDirError as e:
                    print(f"{PROG}: error: {e}", file=sys.stderr, flush=True)
                done |= {c.run_id for c in todo}
                state = job.state()
            if est is not None and todo:
                planned_s, spent_s = planned_s + est, spent_s + time.perf_counter() - t0
            paths, lines = draw_one(job, p, state)
            wall = time.perf_counter() - t0
            incomplete |= bool(lines) or not paths
            print(f"[{i}/{len(job.plans)}] {p.figure.name}: " + (f"drawn {paths[0]}" if paths else "not drawn")
                  + f" ({format_seconds(wall)})", flush=True)
            if lines:
                print("\n".join(lines), file=sys.stderr, flush=True)
            report.append((p.figure.name, paths[0] if paths else "-", len(todo), wall))
    finally:
        if ray_up:
            ray_launch.stop_ray()
    print(f"\n{'figure':<12} {'runs run':>8} {'wall':>9}  file")
    for name, path, n, wall in report:
        print(f"{name:<12} {n:>8} {format_seconds(wall):>9}  {path}")
    print(f"\n{PROG}: wall time {format_seconds(time.perf_counter() - started)}", flush=True)
    return 1 if incomplete else 0


def _rate(planned: float, spent: float) -> float:
    """Measured over estimated time of the studies run so far (1 before any)."""
    return spent / planned if planned > 0 and spent > 0 else 1.0


def ray_env(job: Job):
    from .config import RunEnv

    return RunEnv(results_dir=job.results_dir, data_root=os.path.abspath(job.data_root) if job.data_root else None,
                  download=job.download, gpus_per_worker=job.gpus_per_worker)
