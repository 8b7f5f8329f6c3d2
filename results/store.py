"""Parquet results store: one runs file and one evals file per run, written atomically.

Layout::

    root/runs/<run_id>.parquet    one row (the run)
    root/evals/<run_id>.parquet   one row per evaluation point

Each file is written to ``.tmp-*`` in its own directory, fsynced, then ``os.replace``d
onto its final name. Both temporary files are complete before either rename, the evals
file is renamed first and the runs file last, so a runs file present means the run's
rows are complete. A random write token is stored in both files' Arrow metadata; the
loader drops an evals file whose token differs from its runs file's (which only a kill
between the two renames of a re-write can leave behind).
"""

from __future__ import annotations

import os
import uuid
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .schema import SCHEMA_VERSION, evals_schema, runs_schema, to_tables

TMP_PREFIX = ".tmp-"
SUFFIX = ".parquet"
_TOKEN_KEY = b"bench.write_token"
_VERSION_KEY = b"bench.schema_version"


class ResultsDirError(RuntimeError):
    """The results directory cannot be used (one-line message)."""


def _one_line(e: BaseException) -> str:
    msg = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return " ".join(str(msg).split())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class ResultStore:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(os.path.abspath(os.fspath(root)))
        self.runs_dir = self.root / "runs"
        self.evals_dir = self.root / "evals"

    def __repr__(self) -> str:
        return f"ResultStore({str(self.root)!r})"

    # ------------------------------------------------------------ writing

    def check_writable(self) -> None:
        """Create the directory tree if needed and write + remove a probe file in each
        directory; raise ResultsDirError with a one-line reason otherwise."""
        if self.root.exists() and not self.root.is_dir():
            raise ResultsDirError(f"results directory {self.root} is not writable: it exists and is not a directory")
        for d in (self.root, self.runs_dir, self.evals_dir):
            probe = d / f"{TMP_PREFIX}probe-{uuid.uuid4().hex}"
            try:
                d.mkdir(parents=True, exist_ok=True)
                with open(probe, "wb") as f:
                    f.write(b"probe")
                os.remove(probe)
            except OSError as e:
                where = "" if d == self.root else f" ({d.name}/)"
                raise ResultsDirError(f"results directory {self.root} is not writable{where}: {_one_line(e)}") from None

    def write_run(self, run_row: Mapping[str, Any], eval_rows: Sequence[Mapping[str, Any]]) -> None:
        """Validate and write one run (replacing any earlier rows of the same run_id)."""
        runs_t, evals_t = to_tables(run_row, eval_rows)  # ValueError on bad rows
        run_id = runs_t.column("run_id")[0].as_py()
        token = uuid.uuid4().hex.encode()
        meta = {_TOKEN_KEY: token, _VERSION_KEY: SCHEMA_VERSION.encode()}
        runs_t = runs_t.replace_schema_metadata(meta)
        evals_t = evals_t.replace_schema_metadata(meta)

        tmps: list[Path] = []
        try:
            for d in (self.runs_dir, self.evals_dir):
                d.mkdir(parents=True, exist_ok=True)
            # Both temporaries complete before either rename.
            ev_tmp = self._write_tmp(self.evals_dir, run_id, evals_t, tmps)
            run_tmp = self._write_tmp(self.runs_dir, run_id, runs_t, tmps)
            os.replace(ev_tmp, self._evals_path(run_id))
            tmps.remove(ev_tmp)
            _fsync_dir(self.evals_dir)
            os.replace(run_tmp, self._runs_path(run_id))
            tmps.remove(run_tmp)
            _fsync_dir(self.runs_dir)
        except OSError as e:
            raise ResultsDirError(f"could not write results of run {run_id} under {self.root}: {_one_line(e)}") from None
        finally:
            for t in tmps:
                try:
                    os.remove(t)
                except OSError:
                    pass

    @staticmethod
    def _write_tmp(d: Path, run_id: str, table: pa.Table, tmps: list[Path]) -> Path:
        tmp = d / f"{TMP_PREFIX}{run_id}-{uuid.uuid4().hex[:8]}{SUFFIX}"
        tmps.append(tmp)
        with open(tmp, "wb") as f:
            pq.write_table(table, f)
            f.flush()
            os.fsync(f.fileno())
        return tmp

    def _runs_path(self, run_id: str) -> Path:
        return self.runs_dir / f"{run_id}{SUFFIX}"

    def _evals_path(self, run_id: str) -> Path:
        return self.evals_dir / f"{run_id}{SUFFIX}"

    # ------------------------------------------------------------ reading

    def _run_ids_on_disk(self, d: Path) -> list[str]:
        try:
            names = os.listdir(d)
        except FileNotFoundError:
            return []
        except OSError as e:
            raise ResultsDirError(f"cannot list results directory {d}: {_one_line(e)}") from None
        return sorted(n[: -len(SUFFIX)] for n in names
                      if n.endswith(SUFFIX) and not n.startswith(TMP_PREFIX) and not n.startswith("."))

    def _selected(self, run_ids: Iterable[str] | None) -> list[str]:
        on_disk = self._run_ids_on_disk(self.runs_dir)
        if run_ids is None:
            return on_disk
        if isinstance(run_ids, str):
            run_ids = [run_ids]
        wanted = set(run_ids)
        return [r for r in on_disk if r in wanted]

    @staticmethod
    def _read(path: Path, columns: list[str] | None = None) -> pa.Table | None:
        try:
            return pq.read_table(path, columns=columns)
        except FileNotFoundError:
            return None
        except Exception as e:  # corrupt / truncated / unreadable: skip, do not crash
            warnings.warn(f"skipping unreadable results file {path}: {_one_line(e)}", stacklevel=3)
            return None

    @staticmethod
    def _read_token(path: Path) -> tuple[bool, bytes | None]:
        """(readable, write token) of a runs file; an unreadable one is warned about."""
        try:
            md = pq.read_schema(path).metadata or {}
        except FileNotFoundError:
            return False, None
        except Exception as e:
            warnings.warn(f"skipping unreadable results file {path}: {_one_line(e)}", stacklevel=3)
            return False, None
        return True, md.get(_TOKEN_KEY)

    def finished_run_ids(self, statuses: Iterable[str] = ("ok", "diverged")) -> set[str]:
        """Run ids whose runs file exists with a status in ``statuses``."""
        statuses = {statuses} if isinstance(statuses, str) else set(statuses)
        out: set[str] = set()
        for rid in self._run_ids_on_disk(self.runs_dir):
            t = self._read(self._runs_path(rid), columns=["run_id", "status"])
            if t is None:
                continue
            for r, s in zip(t.column("run_id").to_pylist(), t.column("status").to_pylist()):
                if s in statuses:
                    out.add(r)
        return out

    def load_runs(self, run_ids: Iterable[str] | None = None) -> pd.DataFrame:
        """All runs (or the given run ids) as one DataFrame; union of columns."""
        tables = []
        for rid in self._selected(run_ids):
            t = self._read(self._runs_path(rid))
            if t is not None:
                tables.append(t)
        return _concat(tables, runs_schema())

    def load_evals(self, run_ids: Iterable[str] | None = None) -> pd.DataFrame:
        """Eval rows of all runs (or the given run ids) whose runs file exists."""
        tables = []
        for rid in self._selected(run_ids):
            ev_path = self._evals_path(rid)
            readable, run_token = self._read_token(self._runs_path(rid))
            if not readable:  # no usable runs file: its evals are not loaded either
                continue
            t = self._read(ev_path)
            if t is None:
                continue
            ev_token = (t.schema.metadata or {}).get(_TOKEN_KEY)
            if run_token is not None and ev_token != run_token:
                warnings.warn(f"skipping evals file {ev_path}: it does not belong to the current runs file "
                              f"(interrupted re-write)", stacklevel=2)
                continue
            tables.append(t)
        return _concat(tables, evals_schema())


def _concat(tables: list[pa.Table], empty_schema: pa.Schema) -> pd.DataFrame:
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
