"""Ray: start or join a cluster, run a grid of run configs as Tune trials, multi-worker runs
as Ray Train worker groups inside their trial.

A single-worker run is a plain Tune function trial (a TorchTrainer costs seconds to start on
a small machine). A run with W > 1 workers is a trial whose driver holds no CPU and starts a
``TorchTrainer`` with W workers (gloo on CPU, NCCL on GPUs): the driver reserving a CPU of
its own would deadlock a machine with exactly W CPUs (RAY_NOTES.md).
"""
from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from typing import Any

import torch

from .config import RunConfig, RunEnv

_CKPT_FILE = "state.pt"


def _set_ray_env(local: bool) -> None:
    # Set before ray.init: quieter logs, faster Train reports (the health check paces every report).
    defaults = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2", "RAY_TRAIN_ENABLE_PRINT_PATCH": "0",
                "RAY_DEDUP_LOGS": "0", "RAY_AIR_NEW_OUTPUT": "0", "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
                # Our checkpoints are small and frequent; Tune's snapshot-frequency warning is noise here.
                "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0"}
    if local:
        defaults["RAY_AUTH_MODE"] = "disabled"
    for k, v in defaults.items():
        os.environ.setdefault(k, v)


def start_ray(address: str | None, num_cpus: int | None, num_gpus: int | None = None) -> dict[str, float]:
    """Join the cluster at ``address`` (or ``RAY_ADDRESS``) or start a small local Ray.

    Returns the cluster's total resources.
    """
    import ray

    address = address or os.environ.get("RAY_ADDRESS")
    _set_ray_env(local=not address)
    if ray.is_initialized():
        return ray.cluster_resources()
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    # Workers must import the project even where it is not pip-installed.
    runtime_env = {"env_vars": {"PYTHONPATH": os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")]))}}
    if address:
        ray.init(address=address, runtime_env=runtime_env, logging_level="warning", log_to_driver=False)
    else:
        ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus, object_store_memory=256 * 1024 ** 2,
                 logging_level="warning", log_to_driver=False, runtime_env=runtime_env)
    return ray.cluster_resources()


def stop_ray() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()


class _TuneReporter:
    """Engine reporter inside a single-worker Tune trial."""

    def report(self, metrics: dict, state: dict | None) -> None:
        from ray import tune

        if state is None:
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory() as d:
            torch.save(state, os.path.join(d, _CKPT_FILE))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))

    def restore(self) -> dict | None:
        from ray import tune

        return _load_checkpoint(tune.get_checkpoint())


class _TrainReporter:
    """Engine reporter inside a Ray Train worker: every rank reports, rank 0 saves the state."""

    def report(self, metrics: dict, state: dict | None) -> None:
        import ray.train

        rank = ray.train.get_context().get_world_rank()
        if state is None or rank != 0:
            ray.train.report(metrics)
            return
        with tempfile.TemporaryDirectory() as d:
            torch.save(state, os.path.join(d, _CKPT_FILE))
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))

    def restore(self) -> dict | None:
        import ray.train

        return _load_checkpoint(ray.train.get_checkpoint())


def _load_checkpoint(ckpt) -> dict | None:
    if ckpt is None:
        return None
    with ckpt.as_directory() as d:
        return torch.load(os.path.join(d, _CKPT_FILE), weights_only=False)


def _threads_for_trial() -> None:
    # Ray sets OMP_NUM_THREADS to the trial's CPUs; more torch threads than that slow small loops down.
    n = int(os.environ.get("OMP_NUM_THREADS", "1") or 1)
    torch.set_num_threads(max(1, n))


def _final_metrics(outcome) -> dict:
    r = outcome.run_row
    return {"done": True, "status": r["status"], "steps_done": r["steps_done"], "val_error_final": r["val_error"],
            "steps_per_s": r["steps_per_s"]}


def _train_loop_per_worker(job: dict) -> None:
    """Body of each Ray Train worker of a multi-worker run."""
    import ray.train
    import ray.train.torch

    from algorithms import make_comm

    from .engine import train_run

    _threads_for_trial()
    cfg, env = RunConfig.from_dict(job["run"]), RunEnv(**job["env"])
    device = ray.train.torch.get_device() if env.gpus_per_worker > 0 else torch.device("cpu")
    outcome = train_run(cfg, env, reporter=_TrainReporter(), comm=make_comm(), device=device)
    ray.train.report(_final_metrics(outcome))


def run_trial(job: dict) -> None:
    """A Tune trial: one run, in this process or on a Ray Train worker group."""
    from ray import tune

    from algorithms import Comm

    from .engine import train_run

    cfg, env = RunConfig.from_dict(job["run"]), RunEnv(**job["env"])
    if cfg.workers == 1:
        _threads_for_trial()
        device = "cuda" if env.gpus_per_worker > 0 and torch.cuda.is_available() else "cpu"
        outcome = train_run(cfg, env, reporter=_TuneReporter(), comm=Comm(), device=device)
        tune.report(_final_metrics(outcome))
        return
    import ray.train
    from ray.tune.integration.ray_train import TuneReportCallback
    from ray.train.torch import TorchTrainer

    resources = {"CPU": 1}
    if env.gpus_per_worker > 0:
        resources["GPU"] = env.gpus_per_worker
    trainer = TorchTrainer(
        _train_loop_per_worker,
        train_loop_config=job,
        scaling_config=ray.train.ScalingConfig(num_workers=cfg.workers, use_gpu=env.gpus_per_worker > 0,
                                               resources_per_worker=resources),
        run_config=ray.train.RunConfig(
            name=f"train-{cfg.run_id}", storage_path=os.path.join(env.results_dir, "ray"),
            callbacks=[TuneReportCallback()],
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1),
        ),
    )
    trainer.fit()


def _trial_resources(job: dict) -> dict[str, float]:
    run, env = job["run"], job["env"]
    if run.get("workers", 1) > 1:
        # The trial's driver only waits for its worker group: it must not hold a CPU they need.
        return {"CPU": 0, "memory": 64 * 1024 ** 2}
    res = {"CPU": 1}
    if env.get("gpus_per_worker", 0) > 0:
        res["GPU"] = env["gpus_per_worker"]
    return res


def _make_progress_callback(total: int):
    from ray.tune import Callback

    class Progress(Callback):
        """One line per evaluation and per finished run (Tune's own output is off)."""

        def __init__(self) -> None:
            self.done = 0
            self.started = time.perf_counter()

        def _name(self, trial) -> str:
            r = trial.config["job"]["run"]
            return f"{r['dataset']}/{r['n_labels']} {r['algorithm']} seed={r['seed']}"

        def on_trial_result(self, iteration, trials, trial, result, **info):
            if result.get("done"):
                return
            steps = trial.config["job"]["run"]["steps"]
            err = result.get("val_error_ema", float("nan"))
            print(f"[{self.done}/{total} done, {time.perf_counter() - self.started:6.0f}s] {self._name(trial)}: "
                  f"step {result.get('steps_done', 0)}/{steps} val err {100 * err:.1f}% "
                  f"({result.get('steps_per_s', 0):.1f} steps/s)", flush=True)

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.done += 1
            status = (trial.last_result or {}).get("status", "?")
            print(f"[{self.done}/{total} done, {time.perf_counter() - self.started:6.0f}s] {self._name(trial)}: "
                  f"finished ({status})", flush=True)

        def on_trial_error(self, iteration, trials, trial, **info):
            self.done += 1
            print(f"[{self.done}/{total} done] {self._name(trial)}: trial crashed ({trial.error_file or 'no log'})",
                  flush=True)

    return Progress()


def run_grid(configs: list[RunConfig], env: RunEnv, name: str, max_concurrent: int) -> None:
    """Run every config as a Tune trial (a grid over run configs); results land in the store."""
    from ray import tune

    jobs = [{"run": c.to_dict(), "env": dataclasses.asdict(env)} for c in configs]
    for j in jobs:  # OptimConfig is a nested dataclass: keep plain dicts for Tune's config
        j["run"]["optim"] = dict(j["run"]["optim"])
    trainable = tune.with_resources(run_trial_config, resources=lambda config: _trial_resources(config["job"]))
    tuner = tune.Tuner(
        trainable,
        param_space={"job": tune.grid_search(jobs)},
        tune_config=tune.TuneConfig(max_concurrent_trials=max(1, max_concurrent), reuse_actors=True),
        run_config=tune.RunConfig(
            name=name, storage_path=os.path.join(env.results_dir, "ray"), verbose=0,
            callbacks=[_make_progress_callback(len(jobs))],
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            failure_config=tune.FailureConfig(max_failures=0),
        ),
    )
    import logging

    # Per-trial metrics live in our Parquet tables; Tune's complaint that its own result
    # files are absent (auto loggers are off) is noise.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    tuner.fit()


def run_trial_config(config: dict[str, Any]) -> None:
    """Tune entry point: ``config["job"]`` holds the run config and environment."""
    run_trial(config["job"])
