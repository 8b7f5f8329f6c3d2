"""The parts of a run's row that do not need a trained model: its config columns, the
library versions and hardware, and the failed row of a run Ray gave up on."""
from __future__ import annotations

import datetime as _dt
import json

import torch

import datasets
from results import ResultsDirError, ResultStore

from .checkpoint import RunCheckpoints
from .config import RunConfig, RunEnv
from .environment import environment_columns


def metric_of(dataset: str) -> str:
    """The metric a run on ``dataset`` reports (``error`` for a name the registry does not know)."""
    try:
        return datasets.get_info(dataset).metric
    except datasets.UnknownDataset:
        return "error"


def base_row(cfg: RunConfig, run_id: str) -> dict:
    """The columns of a run's row that come from its config (status failed until it finishes)."""
    row = {
        "run_id": run_id, "suite": cfg.suite, "dataset": cfg.dataset, "n_labels": cfg.n_labels,
        "split_seed": cfg.split_seed, "seed": cfg.seed, "split_hash": "", "algorithm": cfg.algorithm,
        "network": cfg.network, "steps": cfg.steps, "steps_done": 0, "status": "failed", "error_message": "",
        "test_error": float("nan"), "val_error": float("nan"), "wall_time_s": 0.0, "steps_per_s": 0.0,
        "config_json": json.dumps(cfg.to_dict(), sort_keys=True, default=str),
        "protocol_notes": cfg.protocol_notes, "val_protocol": cfg.val_protocol, "preset": cfg.preset,
        "batch_labeled": cfg.batch_labeled, "batch_unlabeled": cfg.batch_unlabeled, "ema_decay": cfg.ema_decay,
        "optimizer": cfg.optim.name, "lr": cfg.optim.lr, "eval_every": cfg.eval_every,
        "precision": cfg.precision, "compile": cfg.compile, "channels_last": cfg.channels_last,
        "metric": metric_of(cfg.dataset),
    }
    row.update({f"hp_{k}": v for k, v in cfg.hparams.items()})
    return row


def record_lost_run(cfg: RunConfig, env: RunEnv, message: str) -> tuple[dict, str]:
    """Write the failed row of a run Ray gave up on (its trial or worker group lost more than
    ``max_failures`` times): progress and attempts from its checkpoint manifest, which stays
    for the next command to resume from."""
    cfg = cfg.resolved()
    manifest = RunCheckpoints(env.results_dir, cfg.run_id).manifest() or {}
    row = base_row(cfg, cfg.run_id)
    row.update(environment_columns(torch.device("cpu"), cfg.workers))
    step = manifest.get("step", 0) if manifest.get("run_id") == cfg.run_id else 0
    row.update(steps_done=int(step), error_message=message[:500], resumed_from_step=0,
               attempts=int(manifest.get("attempts", 1)), wall_time_s=float(manifest.get("wall_time_s", 0.0)),
               finished_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    write_error = ""
    try:
        ResultStore(env.results_dir).write_run(row, [])
    except ResultsDirError as e:
        write_error = str(e)
    return row, write_error
