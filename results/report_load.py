"""Load a results directory for the report, file by file: a corrupt or foreign Parquet file
costs one line naming it, never the report."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .schema import EVALS_REQUIRED
from .store import SUFFIX, TMP_PREFIX, ResultStore

#: columns without which a runs row cannot be placed in a comparison
RUN_COLUMNS = ("run_id", "dataset", "n_labels", "algorithm", "seed", "split_seed", "status", "test_error", "val_error",
               "steps", "steps_done", "steps_per_s")
EVAL_COLUMNS = tuple(EVALS_REQUIRED)
_IDENTITY = {"run_id", "dataset", "algorithm", "status", "step", "split", "model"}  # never empty in our files


@dataclass
class Loaded:
    runs: pd.DataFrame
    evals: pd.DataFrame
    problems: list[str] = field(default_factory=list)  # one line per skipped file
    #: the problems the store has not already printed on stderr itself
    unprinted: list[str] = field(default_factory=list)


def _file_ids(d: Path) -> list[str]:
    if not d.is_dir():
        return []
    return sorted(p.name[: -len(SUFFIX)] for p in d.iterdir()
                  if p.name.endswith(SUFFIX) and not p.name.startswith((TMP_PREFIX, ".")))


def _load_one(load, rid: str, path: Path, needed: tuple[str, ...], loaded: "Loaded") -> pd.DataFrame | None:
    def problem(text: str, printed: bool = False) -> None:
        loaded.problems.append(text)
        if not printed:
            loaded.unprinted.append(text)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            df = load([rid])
        except Exception as e:  # any unreadable file: name it, go on with the rest
            problem(f"skipped {path}: {' '.join(str(e).split())[:300]}")
            return None
    for w in caught:
        problem(f"skipped {path}: " + " ".join(str(w.message).split())[:300])
    if caught:
        return None
    if df.empty:
        # a runs file read as empty was skipped by the store, which said why on stderr (an empty
        # evals file is a run that never evaluated; a skipped one the store names too)
        if needed is RUN_COLUMNS and path.exists():
            problem(f"skipped {path}: unreadable (corrupt, truncated or not written with its runs file)", printed=True)
        return None
    lacking = [c for c in needed if c not in df.columns or (c in _IDENTITY and df[c].isna().any())]
    if lacking:
        problem(f"skipped {path}: not a results file of this project (no {', '.join(lacking)})")
        return None
    return df


def load_results(results_dir: str) -> Loaded:
    """Every readable run and its evaluations under ``results_dir``; unreadable, foreign or
    orphaned files are listed in ``problems`` (one line each) and left out."""
    store = ResultStore(results_dir)
    loaded = Loaded(pd.DataFrame(), pd.DataFrame())
    runs = []
    for rid in _file_ids(store.runs_dir):
        df = _load_one(store.load_runs, rid, store.runs_dir / f"{rid}{SUFFIX}", RUN_COLUMNS, loaded)
        if df is not None:
            runs.append(df)
    runs_df = pd.concat(runs, ignore_index=True) if runs else pd.DataFrame(columns=list(RUN_COLUMNS))
    evals = []
    have = set(runs_df["run_id"])
    for rid in _file_ids(store.evals_dir):
        path = store.evals_dir / f"{rid}{SUFFIX}"
        if rid not in have:
            if not (store.runs_dir / f"{rid}{SUFFIX}").exists():
                text = f"skipped {path}: no runs file for it (a run interrupted before it finished writing)"
                loaded.problems.append(text)
                loaded.unprinted.append(text)
            continue
        df = _load_one(store.load_evals, rid, path, EVAL_COLUMNS, loaded)
        if df is not None:
            evals.append(df)
    evals_df = pd.concat(evals, ignore_index=True) if evals else pd.DataFrame(columns=list(EVAL_COLUMNS))
    loaded.runs, loaded.evals = runs_df, evals_df
    return loaded
