"""Parquet tables of hyperparameter searches and sensitivity studies, beside runs/ and evals/.

Layout::

    root/trials/<search_id>.parquet    one row per trial of a search (rewritten as trials finish)
    root/searches/<search_id>.parquet  one row: the finished search (best config, final test error, cost)
    root/studies/<study_id>.parquet    one row: a sensitivity study (what was varied, over what)

Every file is published whole, as the runs and evals files are (``results.fs``: a local
``.tmp-*`` file renamed onto its name, or one object-store upload): a reader sees an old or
a new table, never a torn one. Trial rows hold the search's *validation* objective only; test
errors live in the runs table, read for the finished search's final re-runs.
"""
from __future__ import annotations

import json
import os
import warnings
from typing import Any, Iterable, Mapping

import pandas as pd
import pyarrow as pa

from .fs import TMP_PREFIX, ResultsDirError, Storage, one_line, table_bytes
from .schema import HP_PREFIX, coerce_column, natural_column
from .store import SUFFIX, concat_tables

TRIAL_STATUSES = ("ok", "stopped_early", "diverged", "failed", "errored")

TRIALS_REQUIRED: dict[str, pa.DataType] = {
    "search_id": pa.string(),
    "trial_id": pa.string(),
    "trial_number": pa.int64(),
    "params_json": pa.string(),
    "val_error": pa.float64(),       # the search objective at the trial's last report (validation only)
    "steps_reached": pa.int64(),
    "stopped_early": pa.bool_(),
    "status": pa.string(),
    "wall_time_s": pa.float64(),
    "run_id": pa.string(),
    "reported_metrics": pa.string(),  # every key the searcher/scheduler was shown, comma-separated
    "finished_at": pa.string(),
}

SEARCHES_REQUIRED: dict[str, pa.DataType] = {
    "search_id": pa.string(),
    "algorithm": pa.string(),
    "dataset": pa.string(),
    "n_labels": pa.int64(),
    "split_seed": pa.int64(),
    "steps": pa.int64(),
    "trials": pa.int64(),
    "seed": pa.int64(),
    "space_json": pa.string(),
    "paper_hps": pa.int64(),         # -1 where the papers give no count
    "objective": pa.string(),
    "best_trial_id": pa.string(),
    "best_params_json": pa.string(),
    "best_val_error": pa.float64(),
    "final_seeds": pa.int64(),
    "final_run_ids_json": pa.string(),
    "test_error_mean": pa.float64(),
    "test_error_std": pa.float64(),
    "n_trials_finished": pa.int64(),
    "n_stopped_early": pa.int64(),
    "n_errored": pa.int64(),
    "trial_compute_s": pa.float64(),  # sum over trials of wall time x CPUs (workers) per trial
    "final_compute_s": pa.float64(),
    "base_config_json": pa.string(),
    "finished_at": pa.string(),
}

STUDIES_REQUIRED: dict[str, pa.DataType] = {
    "study_id": pa.string(),
    "suite": pa.string(),            # the runs' suite column: how the plot finds them
    "dataset": pa.string(),
    "n_labels": pa.int64(),
    "algorithms_json": pa.string(),
    "params_json": pa.string(),      # {algorithm: [param, ...]} (one or two per algorithm)
    "values_json": pa.string(),      # [[values of the first axis], [values of the second]]
    "seeds": pa.int64(),
    "steps": pa.int64(),
    "run_ids_json": pa.string(),
    "created_at": pa.string(),
}


def _table(rows: list[Mapping[str, Any]], required: Mapping[str, pa.DataType], what: str) -> pa.Table:
    """Rows -> Arrow table: required columns typed (as the runs table's), extra columns natural."""
    out: list[dict[str, Any]] = []
    extra: dict[str, pa.DataType] = {}
    for i, row in enumerate(rows):
        where = f"{what} row {i}"
        missing = [n for n in required if n not in row]
        if missing:
            raise ValueError(f"{where}: missing required column(s) {', '.join(missing)}")
        values: dict[str, Any] = {}
        for name, typ in required.items():
            if pa.types.is_boolean(typ):
                if not isinstance(row[name], bool):
                    raise ValueError(f"{where}: column {name!r} must be bool, got {row[name]!r}")
                values[name] = row[name]
            else:
                values[name] = coerce_column(name, row[name], typ, where)
        for name in sorted(k for k in row if k not in required):
            values[name], typ = natural_column(name, row[name], where)
            if typ != pa.null():
                if name in extra and extra[name] != typ:
                    # e.g. an int and a float proposal of one parameter: keep floats
                    typ = pa.float64() if {extra[name], typ} <= {pa.int64(), pa.float64()} else pa.string()
                extra[name] = typ
        out.append(values)
    schema = pa.schema([pa.field(n, t) for n, t in required.items()] + [pa.field(n, t) for n, t in sorted(extra.items())])
    for v in out:
        for name, typ in extra.items():
            if name in v and v[name] is not None and pa.types.is_string(typ) and not isinstance(v[name], str):
                v[name] = json.dumps(v[name])
    return pa.Table.from_pylist([{n: v.get(n) for n in schema.names} for v in out], schema=schema)


def _check_id(kind: str, ident: str) -> None:
    if not ident or ident.startswith(".") or not all(c.isalnum() or c in "-_." for c in ident):
        raise ValueError(f"{kind} {ident!r} must be non-empty, not start with '.', and use only [A-Za-z0-9._-]")


class SearchStore:
    """Reads and writes the trials, searches and studies tables under ``root``."""

    def __init__(self, root: str | os.PathLike):
        self.storage = Storage(os.fspath(root))
        self.root = self.storage.show()

    # ------------------------------------------------------------ writing

    def _write(self, kind: str, ident: str, table: pa.Table) -> None:
        try:
            self.storage.publish([(f"{kind}/{ident}{SUFFIX}", table_bytes(table))])
        except OSError as e:
            raise ResultsDirError(f"could not write {kind}/{ident}{SUFFIX} under {self.root}: {one_line(e)}") from None

    def write_trials(self, search_id: str, rows: Iterable[Mapping[str, Any]]) -> None:
        """Replace the trials table of ``search_id`` by ``rows`` (hyperparameters as ``hp_*``)."""
        _check_id("search id", search_id)
        rows = list(rows)
        for r in rows:
            if r.get("search_id") != search_id:
                raise ValueError(f"trial row {r.get('trial_id')!r} belongs to search {r.get('search_id')!r}, not {search_id!r}")
            if r.get("status") not in TRIAL_STATUSES:
                raise ValueError(f"trial row {r.get('trial_id')!r}: status must be one of {TRIAL_STATUSES}")
        self._write("trials", search_id, _table(rows, TRIALS_REQUIRED, "trial"))

    def write_search(self, row: Mapping[str, Any]) -> None:
        _check_id("search id", row.get("search_id", ""))
        self._write("searches", row["search_id"], _table([row], SEARCHES_REQUIRED, "search"))

    def write_study(self, row: Mapping[str, Any]) -> None:
        _check_id("study id", row.get("study_id", ""))
        self._write("studies", row["study_id"], _table([row], STUDIES_REQUIRED, "study"))

    # ------------------------------------------------------------ reading

    def _load(self, kind: str, ids: Iterable[str] | None, required: Mapping[str, pa.DataType]) -> pd.DataFrame:
        try:
            names = self.storage.list(kind)
        except OSError as e:
            raise ResultsDirError(f"cannot list {self.storage.show(kind)}: {one_line(e)}") from None
        wanted = None if ids is None else {ids} if isinstance(ids, str) else set(ids)
        tables = []
        for n in names:
            if not n.endswith(SUFFIX) or n.startswith(TMP_PREFIX) or n.startswith("."):
                continue
            if wanted is not None and n[: -len(SUFFIX)] not in wanted:
                continue
            try:
                t = self.storage.read_table(f"{kind}/{n}")
            except Exception as e:  # corrupt or truncated: warn and go on, as the runs loader does
                warnings.warn(f"skipping unreadable results file {self.storage.show(f'{kind}/{n}')}: {one_line(e)}",
                              stacklevel=3)
                continue
            tables.append(t)
        return concat_tables(tables, pa.schema([pa.field(k, v) for k, v in required.items()]))

    def load_trials(self, search_ids: Iterable[str] | str | None = None) -> pd.DataFrame:
        return self._load("trials", search_ids, TRIALS_REQUIRED)

    def load_searches(self, search_ids: Iterable[str] | str | None = None) -> pd.DataFrame:
        return self._load("searches", search_ids, SEARCHES_REQUIRED)

    def load_studies(self, study_ids: Iterable[str] | str | None = None) -> pd.DataFrame:
        return self._load("studies", study_ids, STUDIES_REQUIRED)

    def search(self, search_id: str) -> dict | None:
        """The finished search's row as a dict, or None."""
        df = self.load_searches([search_id])
        return None if df.empty else df.iloc[0].to_dict()

    def best_params(self, search_id: str) -> tuple[str, dict[str, Any]] | None:
        """(algorithm, best hyperparameters) of a finished search, or None."""
        row = self.search(search_id)
        if row is None:
            return None
        return row["algorithm"], json.loads(row["best_params_json"])


def hp_columns(params: Mapping[str, Any]) -> dict[str, Any]:
    """Hyperparameters as ``hp_<name>`` columns (the runs table's convention)."""
    return {f"{HP_PREFIX}{k}": v for k, v in params.items()}


__all__ = ["SEARCHES_REQUIRED", "STUDIES_REQUIRED", "TRIALS_REQUIRED", "TRIAL_STATUSES", "SearchStore", "hp_columns"]
