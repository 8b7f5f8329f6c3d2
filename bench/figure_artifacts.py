"""The artifacts a run's final EMA model writes for figures (``RunConfig.artifacts``).

Computed once, after the last step, on rank 0, in eval mode and without gradients: nothing
here touches the weights, the generators or the rows, so a run with artifacts reports the
same numbers as without (``tests/test_artifacts.py``). The fixed subsets are functions of the
dataset and the split only (the same for every method), so two methods' artifacts show the
same points. The table format is :mod:`results.artifacts`.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch

import datasets
from results.artifacts import LANDMARK_IMAGES, artifact_rows, artifact_table

from .sampling import balanced_subset

#: points of the fixed unlabeled and test subsets
SUBSET_SIZE = 500
#: the labeled set is kept whole up to this size
LABELED_MAX = 1000
#: cells per side of the decision grid
GRID_SIDE = 81
#: margin around the data's bounding box, as a fraction of its extent
GRID_MARGIN = 0.1


def fixed_subset(n: int, size: int = SUBSET_SIZE) -> np.ndarray:
    """Sorted indices of ``size`` of ``n`` items drawn with a fixed generator (all if n <= size)."""
    if n <= size:
        return np.arange(n, dtype=np.int64)
    return np.sort(np.random.default_rng(0).choice(n, size, replace=False)).astype(np.int64)


@torch.no_grad()
def _outputs(model: torch.nn.Module, x: torch.Tensor, batch: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """(softmax probabilities [N, C], penultimate features [N, F]) of ``model`` in eval mode."""
    was = model.training
    model.eval()
    probs, feats = [], []
    for chunk in x.split(batch):
        f = model.features(chunk)
        probs.append(torch.softmax(model.classifier(f).float(), 1).cpu())
        feats.append(f.float().cpu())
    model.train(was)
    c, d = getattr(model, "num_classes", 0), getattr(model, "num_features", 0)
    cat = lambda parts, w: torch.cat(parts).numpy() if parts else np.zeros((0, w), np.float32)  # noqa: E731
    return cat(probs, c), cat(feats, d)


def _points(run) -> dict[str, tuple[torch.Tensor, torch.Tensor, np.ndarray]]:
    """{subset: (x, y, index)}: the whole labeled set, a fixed unlabeled subset and a fixed
    class-balanced test subset. The data is reloaded (the run keeps only what it trains on:
    no unlabeled pool for supervised methods, a smaller labeled set with a separate hold-out)."""
    cfg, device = run.cfg, run.device
    data = datasets.load(cfg.dataset, run.env.data_root, run.env.download)
    out = {}
    for subset, idx, size in (("labeled", run.split.labeled, LABELED_MAX), ("unlabeled", run.split.unlabeled, SUBSET_SIZE)):
        pick = fixed_subset(len(idx), size)
        rows = torch.from_numpy(np.asarray(idx)[pick].copy())
        out[subset] = (data.x_train[rows].to(device), data.y_train[rows], pick)
    y_test = data.y_test.numpy()
    pick = balanced_subset(y_test, SUBSET_SIZE) if len(y_test) > SUBSET_SIZE else np.arange(len(y_test))
    rows = torch.from_numpy(np.asarray(pick, dtype=np.int64))
    out["test"] = (data.x_test[rows].to(device), data.y_test[rows], np.asarray(pick, dtype=np.int64))
    return out


def grid_points(x: np.ndarray, side: int = GRID_SIDE, margin: float = GRID_MARGIN) -> np.ndarray:
    """A ``side`` x ``side`` grid [side * side, 2] over the bounding box of ``x`` [N, 2] plus a
    margin, row-major (the second coordinate varies fastest)."""
    lo, hi = x.min(0), x.max(0)
    pad = margin * (hi - lo)
    a = np.linspace(lo[0] - pad[0], hi[0] + pad[0], side, dtype=np.float32)
    b = np.linspace(lo[1] - pad[1], hi[1] + pad[1], side, dtype=np.float32)
    return np.stack(np.meshgrid(a, b, indexing="ij"), -1).reshape(-1, 2)


@torch.no_grad()
def landmark_rows(run, n: int = LANDMARK_IMAGES) -> pa.Table:
    """The ``landmarks`` block of a finished regression run: the first ``n`` test images (inputs
    flattened), their ground truth and the final EMA model's predictions decoded through the
    run's task to target units (pixels), each [n, K]."""
    if run.info.task != datasets.REGRESSION:
        raise ValueError(f"artifact landmarks needs a regression dataset; {run.cfg.dataset} is {run.info.task}")
    model = run.eval_ema.model
    x, y = run.x_test[:n], run.y_test[:n]
    was = model.training
    model.eval()
    pred = run.task.decode(model(x)).float().cpu().numpy()
    model.train(was)
    return artifact_rows(run.cfg.run_id, "landmarks", "test", np.arange(len(x)), x=x.cpu().numpy().reshape(len(x), -1),
                         target=y.cpu().numpy(), prediction=pred)


def compute_artifacts(run, kinds: tuple[str, ...]) -> pa.Table:
    """The artifacts table of a finished ``bench.engine.Run`` (its EMA model) for ``kinds``."""
    model = run.eval_ema.model
    rid = run.cfg.run_id
    blocks = [landmark_rows(run)] if "landmarks" in kinds else []
    kinds = tuple(k for k in kinds if k != "landmarks")
    points = _points(run) if kinds else {}
    for kind in kinds:
        if kind == "decision_grid":
            if tuple(run.info.input_shape) != (2,):
                raise ValueError(f"artifact decision_grid needs 2-D inputs; {run.cfg.dataset} has {run.info.input_shape}")
            every = torch.cat([p[0] for p in points.values()]).cpu().numpy()
            grid = grid_points(every)
            probs, _ = _outputs(model, torch.from_numpy(grid).to(run.device))
            blocks.append(artifact_rows(rid, kind, "grid", np.arange(len(grid)), probs=probs, x=grid))
        for subset, (x, y, idx) in points.items():
            probs, feats = _outputs(model, x)
            extra = {"x": x.cpu().numpy().reshape(len(x), -1)} if kind == "decision_grid" else {"features": feats}
            blocks.append(artifact_rows(rid, kind, subset, idx, label=y.numpy(), probs=probs, **extra))
    return artifact_table(blocks)
