"""Per-run artifacts: what a run's final EMA model says about a few fixed inputs, for figures.

One table per run, ``artifacts/<run_id>.parquet``, written by the run (rank 0) before its runs
file through the store's atomic write (:meth:`results.store.ResultStore.write_table`), so a
finished run that asked for artifacts has them. A run asks with ``RunConfig.artifacts``; the
kinds (:data:`ARTIFACT_KINDS`):

* ``decision_grid`` (2-D inputs only): the model's class probabilities on a regular grid
  over the data (subset ``grid``) and on the labeled, a fixed subset of the unlabeled and a
  fixed subset of the test points (subsets ``labeled``, ``unlabeled``, ``test``), each with
  its input coordinates ``x``: paper 000 Fig. 1's decision boundaries;
* ``features``: penultimate features (``FeatureClassifier.features``) of the labeled, a fixed
  unlabeled and a fixed test subset: paper 003 Fig. 3's t-SNE;
* ``landmarks`` (regression sets only): the first :data:`LANDMARK_IMAGES` test images (a choice
  made before any result exists, the same for every method), each with its input ``x``, its
  ground-truth ``target`` and the model's ``prediction`` decoded to target units (pixels):
  paper 001 Fig. 3's success and failure cases.

Columns (:func:`artifact_schema`): ``artifact``, ``subset``, ``index`` (grid cell, or the
point's index within the run's labeled / unlabeled / test array), ``label`` (the true class;
null on the grid and for regression), ``pred`` (argmax class), ``probs``, ``x``, ``features``,
``target`` and ``prediction`` (float32 lists; null where the kind has none).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from .store import SUFFIX, ResultStore

FOLDER = "artifacts"
ARTIFACT_KINDS = ("decision_grid", "features", "landmarks")
#: test images of the ``landmarks`` artifact: the first this many of the test set
LANDMARK_IMAGES = 64
SUBSETS = ("grid", "labeled", "unlabeled", "test")
_VERSION_KEY = b"bench.artifacts_version"
VERSION = "2"  # 2: target and prediction columns (landmarks)


def artifact_schema() -> pa.Schema:
    """The columns of every artifacts table."""
    floats = pa.list_(pa.float32())
    return pa.schema([("run_id", pa.string()), ("artifact", pa.string()), ("subset", pa.string()),
                      ("index", pa.int64()), ("label", pa.int64()), ("pred", pa.int64()),
                      ("probs", floats), ("x", floats), ("features", floats), ("target", floats),
                      ("prediction", floats)])


def artifact_rows(run_id: str, artifact: str, subset: str, index: np.ndarray, *, label: np.ndarray | None = None,
                  probs: np.ndarray | None = None, x: np.ndarray | None = None,
                  features: np.ndarray | None = None, target: np.ndarray | None = None,
                  prediction: np.ndarray | None = None) -> pa.Table:
    """One block of an artifacts table: ``index`` [N], ``label`` [N], ``probs`` [N, C] (``pred``
    is its argmax), ``x`` [N, D] (inputs, flattened), ``features`` [N, F], ``target`` and
    ``prediction`` [N, K] (regression, target units); ValueError on bad input."""
    if artifact not in ARTIFACT_KINDS:
        raise ValueError(f"unknown artifact {artifact!r} (valid: {', '.join(ARTIFACT_KINDS)})")
    if subset not in SUBSETS:
        raise ValueError(f"unknown artifact subset {subset!r} (valid: {', '.join(SUBSETS)})")
    index = np.asarray(index, dtype=np.int64).reshape(-1)
    n = len(index)

    def lists(a: np.ndarray | None) -> pa.Array:
        if a is None:
            return pa.nulls(n, pa.list_(pa.float32()))
        a = np.asarray(a, dtype=np.float32).reshape(n, -1)
        return pa.FixedSizeListArray.from_arrays(pa.array(a.reshape(-1)), a.shape[1]).cast(pa.list_(pa.float32()))

    named = (("label", label), ("probs", probs), ("x", x), ("features", features), ("target", target),
             ("prediction", prediction))
    for what, a in named:
        if a is not None and len(a) != n:
            raise ValueError(f"artifact {artifact}/{subset}: {what} has {len(a)} rows, index {n}")
    pred = pa.array(np.asarray(probs).argmax(1).astype(np.int64)) if probs is not None else pa.nulls(n, pa.int64())
    return pa.table({
        "run_id": pa.array([run_id] * n, pa.string()), "artifact": pa.array([artifact] * n, pa.string()),
        "subset": pa.array([subset] * n, pa.string()), "index": pa.array(index),
        "label": pa.array(np.asarray(label, dtype=np.int64)) if label is not None else pa.nulls(n, pa.int64()),
        "pred": pred, "probs": lists(probs), "x": lists(x), "features": lists(features),
        "target": lists(target), "prediction": lists(prediction),
    }, schema=artifact_schema())


def artifact_table(blocks: Sequence[pa.Table]) -> pa.Table:
    """The blocks of :func:`artifact_rows` as one table, with the format version in its metadata."""
    table = pa.concat_tables(list(blocks)) if blocks else artifact_schema().empty_table()
    return table.replace_schema_metadata({_VERSION_KEY: VERSION.encode()})


def path_of(run_id: str) -> str:
    """Where a run's artifacts live, relative to the results directory."""
    return f"{FOLDER}/{run_id}{SUFFIX}"


def write_artifacts(store: ResultStore, run_id: str, table: pa.Table) -> None:
    """Publish a run's artifacts (atomic; ResultsDirError on failure)."""
    store.write_table(path_of(run_id), table)


def artifact_ids(results_dir: str) -> set[str]:
    """Run ids with an artifacts table under ``results_dir``."""
    return set(ResultStore(results_dir).table_names(FOLDER))


def kinds_of(results_dir: str, run_ids: Sequence[str]) -> dict[str, set[str]]:
    """{run id: artifact kinds its table holds} for the given runs that have one."""
    store = ResultStore(results_dir)
    have = artifact_ids(results_dir)
    out = {}
    for rid in run_ids:
        if rid in have:
            t = store.read_table(path_of(rid))
            if t is not None and "artifact" in t.column_names:
                out[rid] = set(t.column("artifact").unique().to_pylist())
    return out


def load_artifacts(results_dir: str, run_ids: Sequence[str], artifact: str | None = None) -> dict[str, pd.DataFrame]:
    """{run id: its artifact rows (of one kind, if given)} for the runs that have a readable table.

    List columns come back as numpy arrays per row; :func:`stack` turns one into a matrix.
    """
    store = ResultStore(results_dir)
    have = artifact_ids(results_dir)
    out: dict[str, pd.DataFrame] = {}
    for rid in run_ids:
        if rid not in have:
            continue
        t = store.read_table(path_of(rid))
        if t is None:
            continue
        df = t.to_pandas()
        out[rid] = df[df["artifact"] == artifact].reset_index(drop=True) if artifact else df
    return out


def stack(rows: pd.DataFrame, column: str) -> np.ndarray:
    """The float32 lists of ``column`` as a matrix [N, D]."""
    if not len(rows):
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([np.asarray(v, dtype=np.float32) for v in rows[column]])
