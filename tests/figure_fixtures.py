"""Synthetic results for the figure tests: rows and artifacts for planned runs, no training.

Every number is a deterministic function of the run's algorithm, seed, labels and
hyperparameters (:func:`final_error`), so a test can recompute what a figure should show
with numpy alone.
"""
from __future__ import annotations

import json
import zlib

import numpy as np

import datasets

from results import ResultStore
from results.artifacts import artifact_rows, artifact_table, write_artifacts

N_EVALS = 12


def final_error(cfg) -> float:
    """A deterministic error in (0.05, 0.6) from the config's algorithm, seed, labels and hyperparameters."""
    key = json.dumps([cfg.algorithm, cfg.seed, cfg.n_labels, cfg.dataset, sorted(cfg.resolved().hparams.items())],
                     default=str)
    return 0.05 + 0.55 * (zlib.crc32(key.encode()) % 1000) / 1000


def sec_per_step(cfg) -> float:
    return 0.01 * (1 + zlib.crc32(cfg.algorithm.encode()) % 5)


def curve(cfg) -> list[float]:
    """N_EVALS errors falling linearly to the final one (so the median of the last 20 is their median)."""
    f = final_error(cfg)
    return [min(1.0, f + 0.03 * (N_EVALS - 1 - i)) for i in range(N_EVALS)]


def run_row(cfg, status: str = "ok") -> dict:
    errs = curve(cfg)
    ok = status == "ok"
    row = {"run_id": cfg.run_id, "suite": cfg.suite, "dataset": cfg.dataset, "n_labels": cfg.n_labels,
           "split_seed": cfg.split_seed, "seed": cfg.seed, "split_hash": f"h{cfg.split_seed}", "algorithm": cfg.algorithm,
           "network": cfg.network, "steps": cfg.steps, "steps_done": cfg.steps, "status": status, "error_message": "",
           "test_error": float(np.median(errs)) if ok else float("nan"),
           "val_error": float(np.median(errs)) if ok else float("nan"), "wall_time_s": 1.0,
           "steps_per_s": 1 / sec_per_step(cfg), "config_json": json.dumps(cfg.to_dict(), default=str),
           "python_version": "3", "torch_version": "2", "ray_version": "2", "numpy_version": "1", "hostname": "h",
           "device": "cpu (synthetic)", "cpu_count": 2, "workers": 1, "protocol_notes": cfg.protocol_notes,
           "finished_at": "2025-01-01T00:00:00+00:00", "batch_labeled": cfg.batch_labeled,
           "batch_unlabeled": cfg.batch_unlabeled, "optimizer": cfg.optim.name, "lr": cfg.optim.lr,
           "val_protocol": cfg.val_protocol, "ema_decay": cfg.ema_decay, "eval_every": cfg.eval_every}
    row.update({f"hp_{k}": v for k, v in cfg.resolved().hparams.items()})
    return row


def eval_rows(cfg) -> list[dict]:
    every = max(1, cfg.steps // N_EVALS)
    rows = []
    for i, e in enumerate(curve(cfg)):
        step = every * (i + 1)
        for split, err in (("test", e), ("val", e), ("train", e / 3)):
            row = {"step": step, "split": split, "model": "ema", "error": err, "loss": 1.0,
                   "elapsed_s": step * sec_per_step(cfg)}
            if "meta_semi" in cfg.algorithm and "+" in cfg.algorithm:
                row["diag_assumption1_ratio"] = 1.0 + 0.1 * i + 0.01 * cfg.seed
            if "l2i" in cfg.algorithm:
                row["diag_holdout_loss_before"] = holdout_loss(cfg, i)
                row["diag_holdout_loss_after"] = holdout_loss(cfg, i) - 0.05
            rows.append(row)
    return rows


def holdout_loss(cfg, i: int) -> float:
    """The synthetic hold-out loss before the label update at the i-th evaluation."""
    return 1.0 / (1 + i) + 0.01 * cfg.seed


def landmark_targets(dataset: str, n: int = 12) -> tuple[np.ndarray, tuple[int, ...]]:
    """(ground truth [n, 10] in pixels, image shape): the same for every method of a dataset."""
    shape = tuple(datasets.get_info(dataset).input_shape)
    side = shape[-1]
    rng = np.random.default_rng(zlib.crc32(dataset.encode()))
    face = np.array([0.35, 0.4, 0.65, 0.4, 0.5, 0.55, 0.38, 0.72, 0.62, 0.72]) * side
    return face + rng.normal(0, 1.0, size=(n, 10)), shape


def landmark_error_scale(cfg, i: int) -> float:
    """The synthetic prediction error (pixels) of image i: the method's, varying over images."""
    return (0.5 + 0.1 * i) * (1.5 if "l2i" not in cfg.algorithm else 1.0 + 0.3 * (i % 3))


def landmark_block(cfg) -> object:
    target, shape = landmark_targets(cfg.dataset)
    rng = np.random.default_rng(cfg.seed)
    direction = rng.normal(size=target.shape)
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    pred = target + direction * np.array([landmark_error_scale(cfg, i) for i in range(len(target))])[:, None]
    images = rng.uniform(size=(len(target), int(np.prod(shape))))
    return artifact_rows(cfg.run_id, "landmarks", "test", np.arange(len(target)), x=images, target=target,
                         prediction=pred)


def artifacts(cfg, classes: int = 10) -> object:
    """Synthetic artifacts of the kinds ``cfg`` asks for (2-D points for a decision grid)."""
    rng = np.random.default_rng(cfg.seed)
    blocks = [landmark_block(cfg)] if "landmarks" in cfg.artifacts else []
    for kind in (k for k in cfg.artifacts if k != "landmarks"):
        c = 2 if kind == "decision_grid" else classes
        for subset, n in (("labeled", 20), ("unlabeled", 60), ("test", 60)) + ((("grid", 25),) if kind == "decision_grid" else ()):
            logits = rng.normal(size=(n, c))
            probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
            extra = {"x": rng.normal(size=(n, 2))} if kind == "decision_grid" else {"features": rng.normal(size=(n, 16))}
            if subset == "grid":
                a = np.linspace(-1, 1, 5)
                extra["x"] = np.stack(np.meshgrid(a, a, indexing="ij"), -1).reshape(-1, 2)
            label = None if subset == "grid" else rng.integers(0, c, n)
            blocks.append(artifact_rows(cfg.run_id, kind, subset, np.arange(n), label=label, probs=probs, **extra))
    return artifact_table(blocks)


def write_synthetic(results_dir: str, configs, failed: set[str] = frozenset()) -> None:
    """Rows (and artifacts) for every config; run ids in ``failed`` get status failed."""
    store = ResultStore(results_dir)
    for cfg in configs:
        status = "failed" if cfg.run_id in failed else "ok"
        if cfg.artifacts and status == "ok":
            write_artifacts(store, cfg.run_id, artifacts(cfg))
        store.write_run(run_row(cfg, status), eval_rows(cfg) if status == "ok" else [])
