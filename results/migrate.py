"""python -m results.migrate DIR: rewrite a results directory's files to the current schema.

Files of results schema 1 (one hp_/diag_ column per value the run had) or of an older
column set (before an algorithm or rule was added) load with :class:`ResultStore` anyway;
after this command every runs file and every evals file under DIR has the current columns,
so pyarrow.dataset, DuckDB and polars read the directory as one table with default
options. Each file is replaced atomically with its write token kept; values are kept
(hyperparameters in ``hparams_json``, diagnostics in ``diagnostics``). Failed and diverged
runs get null headline errors, as the current schema stores them. Rows written before the
``metric`` column get ``error`` (every run before it was a classification run).
"""
from __future__ import annotations

import argparse
import json
import sys

import pyarrow as pa

from .schema import DIAG_PREFIX, DIAGNOSTICS, HP_PREFIX, HPARAMS_JSON, LEGACY_METRIC, evals_table, run_table


def upgrade_run(old: pa.Table, run_id: str) -> pa.Table:
    """The one-row runs table ``old`` (any schema version) in the current schema."""
    row = old.to_pylist()[0]
    stored = row.pop(HPARAMS_JSON, None)
    if stored:  # schema 2: the JSON holds every hyperparameter; the typed columns repeat some
        row = {k: v for k, v in row.items() if not k.startswith(HP_PREFIX)}
        row.update({HP_PREFIX + k: v for k, v in json.loads(stored).items()})
    else:  # schema 1: hp_ columns are the run's own (absent ones are not columns of its file)
        row = {k: v for k, v in row.items() if not (k.startswith(HP_PREFIX) and v is None)}
    if row.get("run_id") != run_id:
        raise ValueError(f"holds run {row.get('run_id')!r}, not {run_id!r}")
    if row.get("metric") is None:
        row["metric"] = LEGACY_METRIC
    return run_table(row)


def upgrade_evals(old: pa.Table, run_id: str) -> pa.Table:
    """The evals table ``old`` (any schema version) in the current schema."""
    rows = []
    for r in old.to_pylist():
        entries = dict(r.pop(DIAGNOSTICS, None) or [])
        r = {k: v for k, v in r.items() if not (k.startswith(DIAG_PREFIX) and v is None)}
        r.update({DIAG_PREFIX + k: v for k, v in entries.items()})
        if r.get("metric") is None:
            r["metric"] = LEGACY_METRIC
        rows.append(r)
    return evals_table(rows, run_id=run_id)


def _fail(message: str) -> None:
    print(f"results.migrate: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def main(argv: list[str] | None = None) -> int:
    from .store import ResultsDirError, ResultStore

    p = argparse.ArgumentParser(prog="python -m results.migrate", description=__doc__.splitlines()[0])
    p.add_argument("results_dir", help="a results directory (holding runs/ and evals/)")
    args = p.parse_args(argv)
    store = ResultStore(args.results_dir)
    if not store.exists():
        _fail(f"{store.root} holds no runs/ folder")
    try:
        done, left = store.migrate()
    except ResultsDirError as e:
        _fail(str(e))
    for line in left:
        print(f"left as is: {line}", file=sys.stderr)
    print(f"rewrote {done} files under {store.root} to the current schema; {len(left)} left as is")
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main())
