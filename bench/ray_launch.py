"""Ray: start or join a cluster, run a grid of run configs as Tune trials, multi-worker runs
as Ray Train worker groups inside their trial.

A single-worker run is a plain Tune function trial (a TorchTrainer costs seconds to start on
a small machine). A run with W > 1 workers is a trial whose driver holds no CPU and starts a
``TorchTrainer`` with W workers (gloo on CPU, NCCL on GPUs): the driver reserving a CPU of
its own would deadlock a machine with exactly W CPUs (docs/ray.md). ``bench.run``,
``bench.sensitivity`` and ``bench.tune`` all launch their trials through :func:`run_trial`.

Fault tolerance: Tune restarts a trial whose process or node was lost, Ray Train a worker
group that lost a worker, each up to ``RunEnv.max_failures`` times; every restart resumes
from the run's own checkpoint in the results store (``bench.resume``), not from Ray's
checkpoints, so a re-run of a killed command resumes the same way. A run Ray gives up on is
recorded as failed (docs/cluster.md).
"""
from __future__ import annotations

import dataclasses
import logging
import os
import sys
import uuid
from typing import TYPE_CHECKING, Any, Callable

import torch

from algorithms.registry import PLUGINS_ENV

from results.fs import Storage

from . import ray_node
from .config import RunConfig, RunEnv
from .grid_progress import GridOutcome, make_progress_callback
from .ray_node import DEFAULT_CONNECT_TIMEOUT_S, RayStartError

if TYPE_CHECKING:
    from .engine import Reporter, RunOutcome

# Processes that were this driver's children before it started a local Ray (not Ray's).
_PRE_EXISTING: dict[int, str] | None = None


def _set_ray_env(local: bool) -> None:
    # Set before ray.init: quieter logs, faster Train reports (the health check paces every report).
    defaults = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2", "RAY_TRAIN_ENABLE_PRINT_PATCH": "0",
                "RAY_DEDUP_LOGS": "0", "RAY_AIR_NEW_OUTPUT": "0", "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
                # Our checkpoints are small and frequent; Tune's snapshot-frequency warning is noise here.
                "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0"}
    for k, v in defaults.items():
        os.environ.setdefault(k, v)
    if local:
        ray_node.lockdown_env()


class _NoRestoreHint(logging.Filter):
    """Drops Tune's "Resume experiment with: Tuner.restore(...)": these CLIs resume by running
    the same command again, which they say themselves."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Tuner.restore" not in record.getMessage()


class _OneLine(logging.Filter):
    """Ray's storage errors (a full disk under results_dir/ray) as one line, without the
    traceback: the run's own outcome and the CLI's last line say what happens next."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            e = record.exc_info[1]
            record.msg = f"{' '.join(record.getMessage().split())} {type(e).__name__}: {' '.join(str(e).split())}"
            record.args, record.exc_info, record.exc_text = (), None, None
        return True


def start_ray(address: str | None, num_cpus: int | None, num_gpus: int | None = None,
              connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S) -> dict[str, float]:
    """Join the cluster at ``address`` (or ``RAY_ADDRESS``) or start a small local Ray bound to
    127.0.0.1 with token authentication (bench.ray_node).

    A cluster that does not answer within ``connect_timeout`` seconds raises RayStartError
    (one line). Returns the cluster's total resources.
    """
    global _PRE_EXISTING
    address = address or os.environ.get("RAY_ADDRESS")
    _set_ray_env(local=not address)
    import ray

    logging.getLogger("ray.tune.tune").addFilter(_NoRestoreHint())
    logging.getLogger("ray.tune.execution.experiment_state").addFilter(_OneLine())
    if ray.is_initialized():
        return ray.cluster_resources()
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    # Workers must import the project even where it is not pip-installed, and load the same plugins.
    env_vars = {"PYTHONPATH": os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")]))}
    if os.environ.get(PLUGINS_ENV):
        env_vars[PLUGINS_ENV] = os.environ[PLUGINS_ENV]
    runtime_env = {"env_vars": env_vars}
    if address:
        ray_node.probe_cluster(address, connect_timeout)
        ray.init(address=address, runtime_env=runtime_env, logging_level="warning", log_to_driver=False)
        return ray.cluster_resources()
    _PRE_EXISTING = ray_node.descendants()
    ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus, object_store_memory=256 * 1024 ** 2,
             logging_level="warning", log_to_driver=False, runtime_env=runtime_env)
    try:
        ray_node.check_loopback(ray.get_runtime_context().gcs_address)
    except RayStartError:
        stop_ray()
        raise
    return ray.cluster_resources()


def local_ray_processes() -> dict[int, str]:
    """{pid: start time} of the processes of the local Ray this driver started (empty if none)."""
    if _PRE_EXISTING is None:
        return {}
    mine = ray_node.descendants()
    for pid in _PRE_EXISTING:  # children the driver had before Ray, and theirs
        for p in [pid, *ray_node.descendants(pid)]:
            mine.pop(p, None)
    return mine


def stop_ray() -> None:
    """Shut Ray down; for a local Ray, also end its processes that outlive the shutdown (the
    dashboard and runtime-env agents otherwise linger for about 100 s)."""
    global _PRE_EXISTING
    if "ray" not in sys.modules:
        return
    import ray

    if ray.is_initialized():
        procs = local_ray_processes()
        ray.shutdown()
        ray_node.end_processes(procs)
    _PRE_EXISTING = None


class TuneReporter:
    """Engine reporter inside a single-worker Tune trial."""

    def report(self, metrics: dict) -> None:
        from ray import tune

        tune.report(metrics)


class TrainReporter:
    """Engine reporter inside a Ray Train worker: every rank reports (a barrier)."""

    def report(self, metrics: dict) -> None:
        import ray.train

        ray.train.report(metrics)


def lost_peer(e: BaseException) -> bool:
    """Whether an error inside a worker group means another worker died (its connection
    closed mid-collective): Ray Train then restarts the group from the checkpoint, instead
    of the run being recorded as failed."""
    dist = getattr(torch, "distributed", None)
    if dist is not None and isinstance(e, getattr(dist, "DistError", ())):
        return True
    text = str(e)
    return isinstance(e, RuntimeError) and any(s in text for s in ("gloo/transport", "NCCL", "Connection reset by peer",
                                                                    "Connection closed by peer"))


def threads_for_trial() -> None:
    """torch threads = the trial's CPUs."""
    # Ray sets OMP_NUM_THREADS to the trial's CPUs; more torch threads than that slow small loops down.
    n = int(os.environ.get("OMP_NUM_THREADS", "1") or 1)
    torch.set_num_threads(max(1, n))


def final_metrics(outcome: RunOutcome) -> dict:
    """The last report of a trial: status and validation error of the finished run."""
    r = outcome.run_row
    return {"done": True, "status": r["status"], "steps_done": r["steps_done"], "val_error_final": r["val_error"],
            "steps_per_s": r["steps_per_s"], "write_error": outcome.write_error, "note": outcome.note,
            "error_message": r.get("error_message", "")}


ReporterWrap = Callable[["Reporter", RunConfig], "Reporter"]  # e.g. the search's filter of what Tune may see
FinalMetrics = Callable[["RunOutcome"], dict]


def _train_loop_per_worker(job: dict) -> None:
    """Body of each Ray Train worker of a multi-worker run."""
    import ray.train
    import ray.train.torch

    from algorithms import make_comm

    from .engine import train_run

    threads_for_trial()
    cfg, env = RunConfig.from_dict(job["run"]), RunEnv(**job["env"])
    device = ray.train.torch.get_device() if env.gpus_per_worker > 0 else torch.device("cpu")
    reporter = job["wrap"](TrainReporter(), cfg) if job.get("wrap") else TrainReporter()
    outcome = train_run(cfg, env, reporter=reporter, comm=make_comm(), device=device, lost_peer=lost_peer)
    ray.train.report((job.get("final") or final_metrics)(outcome))


def run_trial(job: dict, wrap: ReporterWrap | None = None, final: FinalMetrics = final_metrics,
              on_outcome: Callable[[RunOutcome], None] | None = None, train_name: str | None = None,
              train_storage: str | None = None) -> None:
    """A Tune trial: one run, in this process (1 worker) or on a Ray Train worker group.

    ``job``: {"run": RunConfig dict, "env": RunEnv dict}. ``wrap`` wraps the engine's reporter
    (every worker's, for multi-worker runs), ``final`` makes the trial's last report from the
    outcome, ``on_outcome`` sees a single-worker outcome before that report. A multi-worker
    run's Train state goes to ``train_storage/train_name`` (default: results_dir/ray/train-ID)
    and is removed once the run's rows are in the store.
    """
    from ray import tune

    from algorithms import Comm

    from .engine import train_run

    cfg, env = RunConfig.from_dict(job["run"]), RunEnv(**job["env"])
    if cfg.workers == 1:
        threads_for_trial()
        device = "cuda" if env.gpus_per_worker > 0 and torch.cuda.is_available() else "cpu"
        reporter = wrap(TuneReporter(), cfg) if wrap else TuneReporter()
        outcome = train_run(cfg, env, reporter=reporter, comm=Comm(), device=device)
        if on_outcome is not None:
            on_outcome(outcome)
        tune.report(final(outcome))
        return
    import ray.train
    from ray.tune.integration.ray_train import TuneReportCallback
    from ray.train.torch import TorchTrainer

    from .run_row import record_lost_run

    resources = {"CPU": 1}
    if env.gpus_per_worker > 0:
        resources["GPU"] = env.gpus_per_worker
    # A name of its own per attempt: Ray Train would otherwise "resume" a finished group of the same name.
    name = f"{train_name or f'train-{cfg.run_id}'}-{uuid.uuid4().hex[:8]}"
    storage = Storage(train_storage or env.results_dir)
    parent = "" if train_storage else "ray"
    path, filesystem = storage.ray_storage(parent)
    trainer = TorchTrainer(
        _train_loop_per_worker,
        train_loop_config={**job, "wrap": wrap, "final": final},
        scaling_config=ray.train.ScalingConfig(num_workers=cfg.workers, use_gpu=env.gpus_per_worker > 0,
                                               resources_per_worker=resources),
        run_config=ray.train.RunConfig(
            name=name, storage_path=path, storage_filesystem=filesystem, callbacks=[TuneReportCallback()],
            failure_config=ray.train.FailureConfig(max_failures=env.max_failures),
        ),
    )
    try:
        trainer.fit()
    except ray.train.TrainingFailedError as e:  # lost more than max_failures times: record it, resumable
        message = f"Ray Train gave up after {env.max_failures + 1} attempts: {' '.join(str(e).split())[:300]}"
        row, write_error = record_lost_run(cfg, env, message)
        tune.report({"done": True, "status": "failed", "steps_done": row["steps_done"], "val_error_final": None,
                     "steps_per_s": 0.0, "write_error": write_error, "note": "", "error_message": message})
    finally:
        storage.delete_dir(f"{parent}/{name}".lstrip("/"))  # the group's Train state is spent either way


def trial_resources(workers: int, gpus_per_worker: float) -> dict[str, float]:
    """What a trial's own process reserves: 1 CPU (and its GPUs) for a single-worker run; no
    CPU for a multi-worker run's driver, which only waits for its worker group and must not
    hold a CPU they need."""
    if workers > 1:
        return {"CPU": 0, "memory": 64 * 1024 ** 2}
    res = {"CPU": 1}
    if gpus_per_worker > 0:
        res["GPU"] = gpus_per_worker
    return res


def _trial_resources(job: dict) -> dict[str, float]:
    return trial_resources(job["run"].get("workers", 1), job["env"].get("gpus_per_worker", 0))


def _os_error_in(e: BaseException) -> OSError | None:
    """The first OSError in an exception's cause/context chain (Tune wraps storage errors)."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, OSError):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def prune_experiment(storage: Storage, rel: str, keep: bool) -> None:
    """Free a finished grid's Ray storage (Tune's experiment state; the rows are in the
    store) unless ``keep`` (trials crashed: their error logs stay; TensorBoard logs)."""
    if not keep:
        storage.delete_dir(rel)
    if storage.local:
        try:
            os.rmdir(storage.path("ray"))  # results_dir/ray, if nothing else is left there
        except OSError:
            pass


def run_grid(configs: list[RunConfig], env: RunEnv, name: str, max_concurrent: int,
             callbacks: list | None = None, keep_experiment: bool = False) -> GridOutcome:
    """Run every config as a Tune trial (a grid over run configs); results land in the store.

    Ray's storage is ``results_dir/ray/<name>`` (Tune's experiment state; checkpoints live
    in the store, ``bench.resume``), removed when the grid ends unless trials crashed or
    ``keep_experiment`` (``callbacks`` such as TensorBoard's write there). A trial whose
    process or node is lost is restarted up to ``env.max_failures`` times; a trial Ray gives
    up on is recorded as a failed run. Ctrl-C raises KeyboardInterrupt here (Tune's own
    handler is off: a re-run of the command resumes). A failed write of Ray's own state
    raises ResultsDirError (one line, path and cause); failed writes of runs' rows are in the
    returned GridOutcome.
    """
    from ray import tune

    from results import ResultsDirError, write_error_message

    from .run_row import record_lost_run

    jobs = [{"run": c.to_dict(), "env": dataclasses.asdict(env)} for c in configs]
    for j in jobs:  # OptimConfig is a nested dataclass: keep plain dicts for Tune's config
        j["run"]["optim"] = dict(j["run"]["optim"])
    outcome = GridOutcome()
    storage = Storage(env.results_dir)
    path, filesystem = storage.ray_storage("ray")
    trainable = tune.with_resources(run_trial_config, resources=lambda config: _trial_resources(config["job"]))
    tuner = tune.Tuner(
        trainable,
        param_space={"job": tune.grid_search(jobs)},
        tune_config=tune.TuneConfig(max_concurrent_trials=max(1, max_concurrent), reuse_actors=True),
        run_config=tune.RunConfig(
            name=name, storage_path=path, storage_filesystem=filesystem, verbose=0,
            callbacks=[make_progress_callback(configs, outcome, max(1, max_concurrent)), *(callbacks or [])],
            failure_config=tune.FailureConfig(max_failures=env.max_failures),
        ),
    )
    # Per-trial metrics live in our Parquet tables; Tune's complaint that its own result
    # files are absent (auto loggers are off) is noise.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    previous = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    exp = f"ray/{name}"
    try:
        tuner.fit()
    except Exception as e:
        cause = _os_error_in(e)
        if cause is None:
            raise
        prune_experiment(storage, exp, keep=True)
        raise ResultsDirError(write_error_message(f"Ray could not write its experiment state under "
                                                  f"{storage.show(exp)}", cause)) from None
    finally:
        if previous is None:
            os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
        else:
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = previous
    for run_id, error in outcome.lost.items():  # Tune gave up on these trials: record them as failed runs
        cfg = next(c for c in configs if c.run_id == run_id)
        _, write_error = record_lost_run(cfg, env, f"Ray gave up after {env.max_failures + 1} attempts: {error}")
        if write_error:
            outcome.write_errors.append(write_error)
    prune_experiment(storage, exp, keep=bool(outcome.crashed) or keep_experiment)
    return outcome


def run_trial_config(config: dict[str, Any]) -> None:
    """Tune entry point: ``config["job"]`` holds the run config and environment."""
    run_trial(config["job"])
