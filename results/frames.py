"""Runs and evals tables of different files as one DataFrame (the store's loaders use it)."""
from __future__ import annotations

import pandas as pd
import pyarrow as pa


def concat(tables: list[pa.Table], empty_schema: pa.Schema) -> pd.DataFrame:
    """Concatenate tables with possibly different extra columns into one DataFrame.

    Required columns come first (in schema order), extra columns after, sorted.
    Missing extra columns become NaN/None; a bool column with gaps stays bool/None
    (object), an int column with gaps becomes float with NaN."""
    tables = [t.replace_schema_metadata(None) for t in tables if t.num_rows > 0]
    if not tables:
        return empty_schema.empty_table().to_pandas()
    required = list(empty_schema.names)
    seen: dict[str, None] = {}
    for t in tables:
        seen.update(dict.fromkeys(t.schema.names))
    order = [c for c in required if c in seen] + sorted(c for c in seen if c not in required)
    # Columns whose types cannot be unified across runs (e.g. hp_x int in one run, str in
    # another) become object columns holding each value as written.
    conflicting: list[str] = []
    for c in order:
        types = {t.schema.field(c).type for t in tables if c in t.schema.names}
        if len(types) > 1:
            try:
                pa.unify_schemas([pa.schema([pa.field(c, ty)]) for ty in types], promote_options="permissive")
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
                conflicting.append(c)
    plain = [t.drop_columns([c for c in conflicting if c in t.schema.names]) for t in tables]
    # Arrow fills absent columns with nulls and promotes e.g. int64 + float64 -> float64.
    merged = pa.concat_tables(plain, promote_options="permissive")
    df = merged.select([c for c in order if c not in conflicting]).to_pandas()
    for c in conflicting:
        values: list = []
        for t in tables:
            values += t.column(c).to_pylist() if c in t.schema.names else [None] * t.num_rows
        df[c] = pd.Series(values, dtype=object)
    return df[order].reset_index(drop=True)
