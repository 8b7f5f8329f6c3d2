"""Column schema of the two results tables (runs, evals) and row -> Arrow conversion.

Every runs file has the same columns, and so has every evals file, so any Parquet reader
(pyarrow.dataset, DuckDB, polars) takes a whole results directory with default options:

runs:  ``RUNS_REQUIRED`` + ``RUNS_OPTIONAL`` (null where a writer has no value) +
       ``hparams_json`` (every hyperparameter of the run, JSON object) + one ``hp_<name>``
       column per hyperparameter of any registered algorithm or meta rule (typed from its
       Hparams field; null where the run's algorithm has no such field).
evals: ``EVALS_REQUIRED`` + ``EVALS_OPTIONAL`` + ``diagnostics`` (map name -> float64, every
       diagnostic of the evaluation) + one float64 ``diag_<name>`` column per diagnostic
       declared by any registered algorithm or rule (class attribute ``diagnostics``).

The hp_/diag_ column sets come from the registry, so a new algorithm or rule adds its
columns by declaring its Hparams and diagnostics; files written before it lack them, and
``python -m results.migrate DIR`` rewrites such files to the current columns. Names that no
registered class declares are kept in ``hparams_json`` / ``diagnostics`` (never lost). The
column set is fingerprinted in each file's metadata (:func:`columns_id`).

Failed and diverged runs store null ``test_error`` and ``val_error``: those headline
columns only hold finished runs' results (progress so far is in the evals rows).

Metrics: ``test_error`` / ``val_error`` (runs) and ``error`` (evals) hold the metric of the run's
dataset, which the ``metric`` column names (:data:`METRICS`): ``error``, the classification error
rate (a fraction in [0, 1]), or ``nme_iod``, the landmark error over the inter-ocular distance (a
fraction of that distance, >= 0; x 100 = the papers' %). Rows of writers before the column have it
null: they are classification runs (``error``). Never average or compare across metrics.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import numbers
import typing
from typing import Any, Mapping, Sequence

import numpy as np
import pyarrow as pa

SCHEMA_VERSION = "2"

STATUSES = ("ok", "failed", "diverged")
SPLITS = ("val", "test",
          "train")  # train: the labeled training set (bench.engine.evaluate_all)
# Models every run evaluates, and the extra ones the suite's algorithms add (``eval_models()``:
# mean_teacher's fast-SWA average "swa"); any other name of letters, digits and "_" is accepted,
# so a new algorithm's extra model never makes a finished run unwritable.
MODELS = ("ema", "raw", "swa")

#: metric name -> what it is (see the module docstring); the unit of every stored value is a fraction
METRICS = {"error": "classification error rate", "nme_iod": "landmark error / inter-ocular distance"}
#: the metric of rows written before the ``metric`` column existed
LEGACY_METRIC = "error"

HP_PREFIX = "hp_"
DIAG_PREFIX = "diag_"
HPARAMS_JSON = "hparams_json"
DIAGNOSTICS = "diagnostics"

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

# Written by the engine; rows from other writers may omit them (stored null).
RUNS_OPTIONAL: dict[str, pa.DataType] = {
    "val_protocol": pa.string(),
    "preset": pa.string(),
    "batch_labeled": pa.int64(),
    "batch_unlabeled": pa.int64(),
    "ema_decay": pa.float64(),
    "optimizer": pa.string(),
    "lr": pa.float64(),
    "eval_every": pa.int64(),
    "n_val": pa.int64(),
    "n_unlabeled": pa.int64(),
    "worker_param_divergence": pa.float64(),
    "precision": pa.string(),  # RunConfig.precision: fp32 / bf16 (rows before it: null, i.e. fp32)
    "compile": pa.bool_(),  # RunConfig.compile: the network torch.compile'd (rows before it: null, i.e. off)
    "channels_last": pa.bool_(),  # RunConfig.channels_last (rows before it: null, i.e. off)
    # attempts (bench.resume): a retry after a lost worker or node, or a re-run of a killed command,
    # resumes from the run's checkpoint; wall_time_s sums the attempts
    "resumed_from_step": pa.int64(),
    "attempts": pa.int64(),
    "last_attempt_wall_time_s": pa.float64(),
    "metric": pa.string(),
}

EVALS_REQUIRED: dict[str, pa.DataType] = {
    "run_id": pa.string(),
    "step": pa.int64(),
    "split": pa.string(),
    "model": pa.string(),
    "error": pa.float64(),
    "loss": pa.float64(),
}

# Columns that later writers add to eval rows (null where a writer has no value).
EVALS_OPTIONAL: dict[str, pa.DataType] = {
    "elapsed_s": pa.float64(),  # training seconds so far (bench.engine.evaluate_all)
    "metric": pa.string(),  # what "error" holds (METRICS); absent in rows written before it: "error"
}

# String columns for which None is accepted and stored as "".
_OPTIONAL_TEXT = {"error_message", "protocol_notes"}
# Float columns that hold the metric: fractions in [0, 1] when finite for the classification error,
# >= 0 for the other metrics.
_FRACTIONS = {"test_error", "val_error", "error"}
# Headline results: null unless the run finished ok.
_HEADLINE = ("test_error", "val_error")
_DIAG_MAP = pa.map_(pa.string(), pa.float64())


# ---------------------------------------------------------------- columns from the registry

def _arrow_type(hint: Any) -> pa.DataType:
    """Arrow type of an Hparams field: bool, int64, float64 or string (anything else is
    stored as JSON text)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        kinds = {_arrow_type(type(a)) for a in args}
        return kinds.pop() if len(kinds) == 1 else pa.string()
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        inner = [a for a in args if a is not type(None)]
        return _arrow_type(inner[0]) if len(inner) == 1 else pa.string()
    return {bool: pa.bool_(), int: pa.int64(), float: pa.float64(), str: pa.string()}.get(hint, pa.string())


def _unify(a: pa.DataType, b: pa.DataType) -> pa.DataType:
    if a == b:
        return a
    if {a, b} == {pa.int64(), pa.float64()}:
        return pa.float64()
    return pa.string()


def _declared_diagnostics(cls: type) -> set[str]:
    """Diagnostics declared by ``cls`` and its bases (class attribute ``diagnostics``)."""
    return {n for k in cls.__mro__ for n in vars(k).get("diagnostics", ())}


@functools.cache
def registry_columns() -> tuple[dict[str, pa.DataType], tuple[str, ...]]:
    """({hp_<name>: type} over every registered algorithm's and rule's Hparams fields,
    sorted diag_<name> over every declared diagnostic)."""
    from algorithms import get_algorithm, list_algorithms, list_rules
    from algorithms.meta.rule import get_rule

    classes = [get_algorithm(n) for n in list_algorithms()] + [get_rule(n) for n in list_rules()]
    hp: dict[str, pa.DataType] = {}
    diag: set[str] = set()
    for cls in classes:
        hints = typing.get_type_hints(cls.Hparams)
        for f in dataclasses.fields(cls.Hparams):
            t = _arrow_type(hints[f.name])
            name = HP_PREFIX + f.name
            hp[name] = _unify(hp[name], t) if name in hp else t
        diag |= _declared_diagnostics(cls)
    return dict(sorted(hp.items())), tuple(sorted(DIAG_PREFIX + d for d in diag))


def runs_schema() -> pa.Schema:
    """The schema of every runs file written by this version of the suite."""
    hp, _ = registry_columns()
    fields = [pa.field(n, t) for n, t in {**RUNS_REQUIRED, **RUNS_OPTIONAL}.items()]
    fields.append(pa.field(HPARAMS_JSON, pa.string()))
    fields += [pa.field(n, t) for n, t in hp.items()]
    return pa.schema(fields)


def evals_schema() -> pa.Schema:
    """The schema of every evals file written by this version of the suite."""
    _, diag = registry_columns()
    fields = [pa.field(n, t) for n, t in {**EVALS_REQUIRED, **EVALS_OPTIONAL}.items()]
    fields.append(pa.field(DIAGNOSTICS, _DIAG_MAP))
    fields += [pa.field(n, pa.float64()) for n in diag]
    return pa.schema(fields)


def columns_id(schema: pa.Schema) -> str:
    """Fingerprint of a schema's column names and types (stored in each file's metadata)."""
    blob = ";".join(f"{f.name}:{f.type}" for f in schema)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# ---------------------------------------------------------------- value coercion

def _coerce(name: str, value: Any, typ: pa.DataType, where: str, metric: str = LEGACY_METRIC) -> Any:
    """Check one required value against its Arrow type; return the Python value to store. A metric
    column (:data:`_FRACTIONS`) must be in [0, 1] for ``metric`` ``error``, >= 0 otherwise."""
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
        if name in _FRACTIONS and math.isfinite(v):
            if metric == LEGACY_METRIC and not 0.0 <= v <= 1.0:
                raise ValueError(f"{where}: column {name!r} is an error fraction and must be in [0, 1], got {v}")
            if v < 0.0:
                raise ValueError(f"{where}: column {name!r} holds the {metric} metric and must be >= 0, got {v}")
        return v
    if pa.types.is_boolean(typ):
        if not isinstance(value, (bool, np.bool_)):
            raise ValueError(f"{where}: column {name!r} must be bool, got {type(value).__name__} ({value!r:.60})")
        return bool(value)
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


def _metric_of_row(row: Mapping[str, Any], where: str) -> str:
    """The row's ``metric`` (legacy rows without one: ``error``); ValueError for an unknown name."""
    metric = row.get("metric")
    if metric is None:
        return LEGACY_METRIC
    if metric not in METRICS:
        raise ValueError(f"{where}: metric must be one of {', '.join(METRICS)}, got {metric!r}")
    return metric


def _check_run_id(run_id: str) -> None:
    # The run id names files: keep it to a safe character set.
    if not run_id or run_id.startswith(".") or not all(c.isalnum() or c in "-_." for c in run_id):
        raise ValueError(f"run_id {run_id!r} must be non-empty, not start with '.', and use only [A-Za-z0-9._-]")


# ---------------------------------------------------------------- tables

def _typed(name: str, value: Any, typ: pa.DataType, where: str) -> Any:
    """A value for a registry (hp_) column of type ``typ``; ValueError if it does not fit."""
    if value is None:
        return None
    if pa.types.is_string(typ):
        return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=_json_default)
    v, natural = _natural(name, value, where)
    if natural == typ or (pa.types.is_float64(typ) and pa.types.is_int64(natural)):
        return float(v) if pa.types.is_float64(typ) else v
    raise ValueError(f"{where}: column {name!r} holds {typ}, got {type(value).__name__} ({value!r:.60})")


def run_table(run_row: Mapping[str, Any]) -> pa.Table:
    """Validate one run row and return it as a one-row Arrow table of :func:`runs_schema`.

    ``hp_*`` keys are the run's hyperparameters: all go to ``hparams_json``, and those of a
    registered algorithm or rule to their own column too. Any other key must be a column
    of the schema (ValueError otherwise: a new column is declared in this module).
    """
    where = f"run row {run_row.get('run_id', '?')!r}"
    missing = [n for n in RUNS_REQUIRED if n not in run_row]
    if missing:
        raise ValueError(f"{where}: missing required column(s) {', '.join(missing)}")
    values: dict[str, Any] = {}
    metric = _metric_of_row(run_row, where)
    for name, typ in RUNS_REQUIRED.items():
        values[name] = _coerce(name, run_row[name], typ, where, metric)
    _check_run_id(values["run_id"])
    if values["status"] not in STATUSES:
        raise ValueError(f"{where}: status must be one of {STATUSES}, got {values['status']!r}")
    if values["status"] != "ok":
        for name in _HEADLINE:
            values[name] = None
    for name, typ in RUNS_OPTIONAL.items():
        if run_row.get(name) is not None:
            values[name] = _coerce(name, run_row[name], typ, where)
    hp_cols, _ = registry_columns()
    hparams: dict[str, Any] = {}
    for name in sorted(k for k in run_row if k not in RUNS_REQUIRED and k not in RUNS_OPTIONAL):
        if not isinstance(name, str) or not name.startswith(HP_PREFIX) or name == HP_PREFIX:
            if name == HPARAMS_JSON:
                continue
            raise ValueError(f"{where}: column {name!r} is not in the runs schema (hp_<name>, or a column of "
                             f"RUNS_REQUIRED / RUNS_OPTIONAL in results.schema)")
        value = run_row[name]
        _natural(name, value, where)  # unsupported types -> ValueError
        hparams[name[len(HP_PREFIX):]] = value
        if name in hp_cols:
            values[name] = _typed(name, value, hp_cols[name], where)
    values[HPARAMS_JSON] = json.dumps(hparams, sort_keys=True, default=_json_default)
    schema = runs_schema()
    return pa.Table.from_pylist([{n: values.get(n) for n in schema.names}], schema=schema)


def evals_table(eval_rows: Sequence[Mapping[str, Any]], run_id: str | None = None) -> pa.Table:
    """Validate eval rows and return them as an Arrow table of :func:`evals_schema`.

    Rows without ``run_id`` get ``run_id``; rows with another run id are an error.
    ``diag_*`` values are floats: all go to the ``diagnostics`` map, the registry's to their
    own column too (null in rows without them).
    """
    _, diag_cols = registry_columns()
    known = set(diag_cols)
    rows: list[dict[str, Any]] = []
    for i, row in enumerate(eval_rows):
        row = dict(row)
        if "run_id" not in row and run_id is not None:
            row["run_id"] = run_id
        where = f"eval row {i} of run {row.get('run_id', run_id)!r}"
        missing = [n for n in EVALS_REQUIRED if n not in row]
        if missing:
            raise ValueError(f"{where}: missing required column(s) {', '.join(missing)}")
        metric = _metric_of_row(row, where)
        out = {n: _coerce(n, row[n], t, where, metric) for n, t in EVALS_REQUIRED.items()}
        if run_id is not None and out["run_id"] != run_id:
            raise ValueError(f"{where}: run_id {out['run_id']!r} does not match the run's {run_id!r}")
        if out["split"] not in SPLITS:
            raise ValueError(f"{where}: split must be one of {SPLITS}, got {out['split']!r}")
        if not out["model"] or not all(c.isalnum() or c == "_" for c in out["model"]):
            raise ValueError(f"{where}: model must be a name of letters, digits and '_' (e.g. {', '.join(MODELS)}), "
                             f"got {out['model']!r}")
        diagnostics: list[tuple[str, float]] = []
        for name, v in row.items():
            if name in EVALS_REQUIRED:
                continue
            if name in EVALS_OPTIONAL:
                out[name] = None if v is None else _coerce(name, v, EVALS_OPTIONAL[name], where)
                continue
            if not isinstance(name, str) or not name.startswith(DIAG_PREFIX) or name == DIAG_PREFIX:
                raise ValueError(f"{where}: column {name!r} is not in the evals schema (diag_<name>, or a column "
                                 f"of EVALS_REQUIRED / EVALS_OPTIONAL in results.schema)")
            if v is not None and (isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real)):
                raise ValueError(f"{where}: diagnostic {name!r} must be a float, got {type(v).__name__} ({v!r:.60})")
            if v is None:
                continue
            diagnostics.append((name[len(DIAG_PREFIX):], float(v)))
            if name in known:
                out[name] = float(v)
        out[DIAGNOSTICS] = sorted(diagnostics)
        rows.append(out)
    schema = evals_schema()
    return pa.Table.from_pylist([{n: r.get(n) for n in schema.names} for r in rows], schema=schema)


def to_tables(run_row: Mapping[str, Any], eval_rows: Sequence[Mapping[str, Any]]) -> tuple[pa.Table, pa.Table]:
    """Turn a run row and its eval rows into (runs_table, evals_table), validating both.

    Raises a one-line ValueError for a missing required column, a wrong type, an
    unknown status/split/model, an error fraction outside [0, 1], or an unsafe run_id.
    """
    runs = run_table(run_row)
    evals = evals_table(eval_rows, run_id=runs.column("run_id")[0].as_py())
    return runs, evals


# Public names of the value checks results.trials shares with these tables.
coerce_column = _coerce
natural_column = _natural
