"""Column schema of the two results tables (runs, evals) and row -> Arrow conversion.

runs:  one row per run. Required columns are ``RUNS_REQUIRED``; hyperparameters are
       extra columns named ``hp_<name>`` stored with their natural type (bool, int64,
       float64 or string; lists/dicts are stored as JSON strings).
evals: one row per evaluation point. Required columns are ``EVALS_REQUIRED``; method
       diagnostics are extra float64 columns named ``diag_<name>``.

Other extra columns are accepted too (the required set is a minimum) and stored with
their natural type.
"""

from __future__ import annotations

import json
import math
import numbers
from typing import Any, Mapping, Sequence

import numpy as np
import pyarrow as pa

SCHEMA_VERSION = "1"

STATUSES = ("ok", "failed", "diverged")
SPLITS = ("val", "test")
MODELS = ("ema", "raw", "swa")  # swa: fast-SWA average (mean_teacher fast_swa)

HP_PREFIX = "hp_"
DIAG_PREFIX = "diag_"

RUNS_REQUIRED: dict[str, pa.DataType] = {
    "run_id": pa.string(),
    "suite": pa.string(),
    "dataset": pa.string(),
    "n_labels": pa.int64(),
    "split_seed": pa.int64(),
    "seed": pa.int64(),
    "split_hash": pa.string(),
    "algorithm": pa.string(),
    "network": pa.string(),
    "steps": pa.int64(),
    "steps_done": pa.int64(),
    "status": pa.string(),
    "error_message": pa.string(),
    "test_error": pa.float64(),
    "val_error": pa.float64(),
    "wall_time_s": pa.float64(),
    "steps_per_s": pa.float64(),
    "config_json": pa.string(),
    "python_version": pa.string(),
    "torch_version": pa.string(),
    "ray_version": pa.string(),
    "numpy_version": pa.string(),
    "hostname": pa.string(),
    "device": pa.string(),
    "cpu_count": pa.int64(),
    "workers": pa.int64(),
    "protocol_notes": pa.string(),
    "finished_at": pa.string(),
}

EVALS_REQUIRED: dict[str, pa.DataType] = {
    "run_id": pa.string(),
    "step": pa.int64(),
    "split": pa.string(),
    "model": pa.string(),
    "error": pa.float64(),
    "loss": pa.float64(),
}

# String columns for which None is accepted and stored as "".
_OPTIONAL_TEXT = {"error_message", "protocol_notes"}
# Float columns that are error fractions and must lie in [0, 1] when finite.
_FRACTIONS = {"test_error", "val_error", "error"}


def runs_schema(extra: Mapping[str, pa.DataType] | None = None) -> pa.Schema:
    fields = [pa.field(n, t) for n, t in RUNS_REQUIRED.items()]
    fields += [pa.field(n, t) for n, t in (extra or {}).items()]
    return pa.schema(fields)


def evals_schema(extra: Mapping[str, pa.DataType] | None = None) -> pa.Schema:
    fields = [pa.field(n, t) for n, t in EVALS_REQUIRED.items()]
    fields += [pa.field(n, t) for n, t in (extra or {}).items()]
    return pa.schema(fields)


# ---------------------------------------------------------------- value coercion

def _coerce(name: str, value: Any, typ: pa.DataType, where: str) -> Any:
    """Check one required value against its Arrow type; return the Python value to store."""
    if pa.types.is_string(typ):
        if value is None and name in _OPTIONAL_TEXT:
            return ""
        if not isinstance(value, str):
            raise ValueError(f"{where}: column {name!r} must be str, got {type(value).__name__} ({value!r:.60})")
        return value
    if pa.types.is_int64(typ):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
            raise ValueError(f"{where}: column {name!r} must be int, got {type(value).__name__} ({value!r:.60})")
        return int(value)
    if pa.types.is_float64(typ):
        if value is None:
            return None
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise ValueError(f"{where}: column {name!r} must be a float, got {type(value).__name__} ({value!r:.60})")
        v = float(value)
        if name in _FRACTIONS and math.isfinite(v) and not 0.0 <= v <= 1.0:
            raise ValueError(f"{where}: column {name!r} is an error fraction and must be in [0, 1], got {v}")
        return v
    raise AssertionError(f"unhandled type {typ}")  # pragma: no cover


def _natural(name: str, value: Any, where: str) -> tuple[Any, pa.DataType]:
    """Natural Arrow type of an extra (hp_* or other) scalar value."""
    if value is None:
        return None, pa.null()
    if isinstance(value, (bool, np.bool_)):
        return bool(value), pa.bool_()
    if isinstance(value, numbers.Integral):
        return int(value), pa.int64()
    if isinstance(value, numbers.Real):
        return float(value), pa.float64()
    if isinstance(value, str):
        return value, pa.string()
    if isinstance(value, (list, tuple, dict)):
        try:
            return json.dumps(value, sort_keys=True, default=_json_default), pa.string()
        except (TypeError, ValueError) as e:
            raise ValueError(f"{where}: column {name!r} value {value!r:.60} is not JSON-serialisable: {e}") from None
    raise ValueError(f"{where}: column {name!r} has unsupported type {type(value).__name__} ({value!r:.60})")


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"{type(o).__name__} is not JSON-serialisable")


def _check_run_id(run_id: str) -> None:
    # The run id names files: keep it to a safe character set.
    if not run_id or run_id.startswith(".") or not all(c.isalnum() or c in "-_." for c in run_id):
        raise ValueError(f"run_id {run_id!r} must be non-empty, not start with '.', and use only [A-Za-z0-9._-]")


# ---------------------------------------------------------------- tables

def run_table(run_row: Mapping[str, Any]) -> pa.Table:
    """Validate one run row and return it as a one-row Arrow table."""
    where = f"run row {run_row.get('run_id', '?')!r}"
    missing = [n for n in RUNS_REQUIRED if n not in run_row]
    if missing:
        raise ValueError(f"{where}: missing required column(s) {', '.join(missing)}")
    values: dict[str, Any] = {}
    for name, typ in RUNS_REQUIRED.items():
        values[name] = _coerce(name, run_row[name], typ, where)
    _check_run_id(values["run_id"])
    if values["status"] not in STATUSES:
        raise ValueError(f"{where}: status must be one of {STATUSES}, got {values['status']!r}")
    extra: dict[str, pa.DataType] = {}
    for name in sorted(k for k in run_row if k not in RUNS_REQUIRED):
        if not isinstance(name, str) or not name:
            raise ValueError(f"{where}: column names must be non-empty str, got {name!r}")
        values[name], extra[name] = _natural(name, run_row[name], where)
    schema = runs_schema(extra)
    return pa.Table.from_pylist([values], schema=schema)


def evals_table(eval_rows: Sequence[Mapping[str, Any]], run_id: str | None = None) -> pa.Table:
    """Validate eval rows and return them as an Arrow table.

    Rows without ``run_id`` get ``run_id``; rows with another run id are an error.
    ``diag_*`` columns are float64; a row lacking a diag column stores null there.
    """
    rows: list[dict[str, Any]] = []
    extra_names: set[str] = set()
    for i, row in enumerate(eval_rows):
        row = dict(row)
        if "run_id" not in row and run_id is not None:
            row["run_id"] = run_id
        where = f"eval row {i} of run {row.get('run_id', run_id)!r}"
        missing = [n for n in EVALS_REQUIRED if n not in row]
        if missing:
            raise ValueError(f"{where}: missing required column(s) {', '.join(missing)}")
        out = {n: _coerce(n, row[n], t, where) for n, t in EVALS_REQUIRED.items()}
        if run_id is not None and out["run_id"] != run_id:
            raise ValueError(f"{where}: run_id {out['run_id']!r} does not match the run's {run_id!r}")
        if out["split"] not in SPLITS:
            raise ValueError(f"{where}: split must be one of {SPLITS}, got {out['split']!r}")
        if out["model"] not in MODELS:
            raise ValueError(f"{where}: model must be one of {MODELS}, got {out['model']!r}")
        for name in row:
            if name in EVALS_REQUIRED:
                continue
            if not isinstance(name, str) or not name:
                raise ValueError(f"{where}: column names must be non-empty str, got {name!r}")
            v = row[name]
            if name.startswith(DIAG_PREFIX):
                if v is not None and (isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real)):
                    raise ValueError(f"{where}: diagnostic {name!r} must be a float, got {type(v).__name__} ({v!r:.60})")
                v = None if v is None else float(v)
            else:
                v = _natural(name, v, where)[0]
            out[name] = v
            extra_names.add(name)
        rows.append(out)

    extra: dict[str, pa.DataType] = {}
    for name in sorted(extra_names):
        if name.startswith(DIAG_PREFIX):
            extra[name] = pa.float64()
            continue
        col = [r.get(name) for r in rows]
        try:
            extra[name] = pa.array(col).type
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise ValueError(f"eval rows of run {run_id!r}: column {name!r} mixes types: {e}") from None
    schema = evals_schema(extra)
    return pa.Table.from_pylist([{n: r.get(n) for n in schema.names} for r in rows], schema=schema)


def to_tables(run_row: Mapping[str, Any], eval_rows: Sequence[Mapping[str, Any]]) -> tuple[pa.Table, pa.Table]:
    """Turn a run row and its eval rows into (runs_table, evals_table), validating both.

    Raises a one-line ValueError for a missing required column, a wrong type, an
    unknown status/split/model, an error fraction outside [0, 1], or an unsafe run_id.
    """
    runs = run_table(run_row)
    evals = evals_table(eval_rows, run_id=runs.column("run_id")[0].as_py())
    return runs, evals
