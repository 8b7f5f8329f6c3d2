"""Parquet results store: one runs file and one evals file per run, written atomically.

Layout::

    root/runs/<run_id>.parquet    one row (the run)
    root/evals/<run_id>.parquet   one row per evaluation point

Each file is written to ``.tmp-*`` in its own directory, fsynced, then ``os.replace``d
onto its final name. Both temporary files are complete before either rename, the evals
file is renamed first and the runs file last, so a runs file present means the run's
rows are complete. A random write token is stored in both files' Arrow metadata; the
loader drops an evals file whose token differs from its runs file's (which only a kill
between the two renames of a re-write can leave behind); such a run, like one whose evals
file is unreadable, does not count as finished and is re-run.

Problems met while reading (an unreadable file, a stale evals file, files of an older
schema) are reported on stderr, one line each and once per process, saying what happens
next. A failed write raises ResultsDirError naming the path and the cause; files already
in place are never touched by a failed write.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .frames import concat as _concat
from .schema import (DIAG_PREFIX, DIAGNOSTICS, HP_PREFIX, HPARAMS_JSON, SCHEMA_VERSION, columns_id, evals_schema,
                     runs_schema, to_tables)

TMP_PREFIX = ".tmp-"
SUFFIX = ".parquet"
_TOKEN_KEY = b"bench.write_token"
_VERSION_KEY = b"bench.schema_version"
_COLUMNS_KEY = b"bench.columns"
_NOTED: set[str] = set()


class ResultsDirError(RuntimeError):
    """The results directory cannot be used (one-line message)."""


def _one_line(e: BaseException) -> str:
    msg = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return " ".join(str(msg).split())


def write_error_message(what: str, e: OSError) -> str:
    """``what: PATH: cause`` in one line, for a failed write (the path from the error if it has one)."""
    path = getattr(e, "filename", None)
    return f"{what}{f': {path}' if path else ''}: {_one_line(e)}"


def note(message: str, key: str | None = None) -> None:
    """One line on stderr, once per process for the same ``key`` (default: the message)."""
    key = message if key is None else key
    if key not in _NOTED:
        _NOTED.add(key)
        print(f"results: {' '.join(message.split())}", file=sys.stderr, flush=True)


def _cause(e: BaseException) -> str:
    """The first sentence of an error, at most 160 characters."""
    text = _one_line(e)
    first = text.split(". ")[0]
    return first if len(first) <= 160 else first[:157] + "..."


_RERUN = "the run is left out of tables and counts as not finished: the next bench.run re-runs it"


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
        """ResultsDirError (one line) unless rows can be written under the root. Creates
        nothing: a probe file is written and removed in each of root, runs/ and evals/ that
        exists, else in the nearest existing folder above the root."""
        existing = [d for d in (self.root, self.runs_dir, self.evals_dir) if d.exists()]
        if not existing:
            up = self.root.parent
            while not up.exists() and up != up.parent:
                up = up.parent
            existing = [up]
        for d in existing:
            where = "" if d == self.root else f" ({d.name}/)" if d.parent == self.root else f" ({d} is the nearest existing folder)"
            if not d.is_dir():
                raise ResultsDirError(f"results directory {self.root} is not writable{where}: {d} exists and is not a directory")
            probe = d / f"{TMP_PREFIX}probe-{uuid.uuid4().hex}"
            try:
                with open(probe, "wb") as f:
                    f.write(b"probe")
                os.remove(probe)
            except OSError as e:
                raise ResultsDirError(f"results directory {self.root} is not writable{where}: {_one_line(e)}") from None

    def write_run(self, run_row: Mapping[str, Any], eval_rows: Sequence[Mapping[str, Any]]) -> None:
        """Validate and write one run (replacing any earlier rows of the same run_id)."""
        runs_t, evals_t = to_tables(run_row, eval_rows)  # ValueError on bad rows
        run_id = runs_t.column("run_id")[0].as_py()
        token = uuid.uuid4().hex.encode()
        runs_t = runs_t.replace_schema_metadata(_metadata(runs_t.schema, token))
        evals_t = evals_t.replace_schema_metadata(_metadata(evals_t.schema, token))

        tmps: list[Path] = []
        target = self.root
        try:
            for d in (self.runs_dir, self.evals_dir):
                d.mkdir(parents=True, exist_ok=True)
            # Both temporaries complete before either rename.
            target = self._evals_path(run_id)
            ev_tmp = self._write_tmp(self.evals_dir, run_id, evals_t, tmps)
            target = self._runs_path(run_id)
            run_tmp = self._write_tmp(self.runs_dir, run_id, runs_t, tmps)
            os.replace(ev_tmp, self._evals_path(run_id))
            tmps.remove(ev_tmp)
            _fsync_dir(self.evals_dir)
            os.replace(run_tmp, self._runs_path(run_id))
            tmps.remove(run_tmp)
            _fsync_dir(self.runs_dir)
        except OSError as e:
            raise ResultsDirError(write_error_message(f"could not write the results of run {run_id}",
                                                      _naming(e, target))) from None
        finally:
            _remove_all(tmps)

    @staticmethod
    def _write_tmp(d: Path, run_id: str, table: pa.Table, tmps: list[Path]) -> Path:
        tmp = d / f"{TMP_PREFIX}{run_id}-{uuid.uuid4().hex[:8]}{SUFFIX}"
        tmps.append(tmp)
        with open(tmp, "wb") as f:
            pq.write_table(table, f)
            f.flush()
            os.fsync(f.fileno())
        return tmp

    def write_table(self, rel: str, table: pa.Table) -> None:
        """Publish ``table`` at ``root/rel`` (e.g. ``artifacts/<run_id>.parquet``) whole or not at
        all, as the runs and evals files are; ResultsDirError (one line) if it cannot be written."""
        path = self.root / rel
        tmps: list[Path] = []
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self._write_tmp(path.parent, path.stem, table, tmps), path)
            tmps.clear()
            _fsync_dir(path.parent)
        except OSError as e:
            raise ResultsDirError(write_error_message(f"could not write {rel}", _naming(e, path))) from None
        finally:
            _remove_all(tmps)

    def read_table(self, rel: str) -> pa.Table | None:
        """The table at ``root/rel``; None if there is none or it is unreadable (said once on stderr)."""
        path = self.root / rel
        try:
            return pq.read_table(path)
        except FileNotFoundError:
            return None
        except Exception as e:  # corrupt / truncated: the caller treats it as missing
            note(f"skipping unreadable file {path} ({_cause(e)})", key=str(path))
            return None

    def table_names(self, folder: str) -> list[str]:
        """Names (without ``.parquet``) of the complete tables in ``root/folder``."""
        return self._run_ids_on_disk(self.root / folder)

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

    def _read(self, path: Path, columns: list[str] | None = None) -> pa.Table | None:
        try:
            table = pq.read_table(path, columns=columns)
        except FileNotFoundError:
            return None
        except Exception as e:  # corrupt / truncated / unreadable: skip, do not crash
            note(f"skipping unreadable results file {path} ({_cause(e)}); {_RERUN}", key=str(path))
            return None
        md = table.schema.metadata or {}
        if md.get(_COLUMNS_KEY) is None or md.get(_COLUMNS_KEY).decode() not in self._current_ids():
            version = (md.get(_VERSION_KEY) or b"1").decode()
            kind = path.parent.name
            note(f"{kind} files under {self.root} include files of results schema {version} or of another column set "
                 f"(an older version of the suite); they load here, and `python -m results.migrate {self.root}` "
                 f"rewrites them to schema {SCHEMA_VERSION}, whose files every Parquet reader takes as one table")
        return table

    @staticmethod
    def _current_ids() -> tuple[str, str]:
        return columns_id(runs_schema()), columns_id(evals_schema())

    def _paired_evals(self, rid: str, run_token: bytes | None, columns: list[str] | None = None) -> pa.Table | None:
        """The run's evals table if readable and written together with its runs file."""
        ev_path = self._evals_path(rid)
        t = self._read(ev_path, columns=columns)
        if t is None:
            if not ev_path.exists():
                note(f"run {rid} has a runs file but no evals file {ev_path}; {_RERUN}", key=str(ev_path))
            return None
        ev_token = (t.schema.metadata or {}).get(_TOKEN_KEY)
        if run_token is not None and ev_token != run_token:
            note(f"skipping evals file {ev_path}: it was not written with the runs file beside it (an interrupted "
                 f"re-write); {_RERUN}", key=str(ev_path))
            return None
        return t

    def finished_run_ids(self, statuses: Iterable[str] = ("ok", "diverged")) -> set[str]:
        """Run ids whose runs file has a status in ``statuses`` and whose evals file is
        readable and paired with it (same write token); any other run is re-run."""
        statuses = {statuses} if isinstance(statuses, str) else set(statuses)
        out: set[str] = set()
        for rid in self._run_ids_on_disk(self.runs_dir):
            t = self._read(self._runs_path(rid), columns=["run_id", "status"])
            if t is None or not set(t.column("status").to_pylist()) & statuses:
                continue
            if self._paired_evals(rid, (t.schema.metadata or {}).get(_TOKEN_KEY)) is not None:
                out.update(r for r, s in zip(t.column("run_id").to_pylist(), t.column("status").to_pylist())
                           if s in statuses)
        return out

    def load_runs(self, run_ids: Iterable[str] | None = None) -> pd.DataFrame:
        """All runs (or the given run ids) as one DataFrame: the schema's columns, plus an
        ``hp_<name>`` column for any hyperparameter only ``hparams_json`` holds."""
        tables = []
        for rid in self._selected(run_ids):
            t = self._read(self._runs_path(rid))
            if t is not None:
                tables.append(t)
        return _expand_hparams(_concat(tables, runs_schema()))

    def load_evals(self, run_ids: Iterable[str] | None = None) -> pd.DataFrame:
        """Eval rows of all runs (or the given run ids) whose runs file is readable and whose
        evals file was written with it; ``diagnostics`` entries become ``diag_<name>`` columns."""
        tables = []
        for rid in self._selected(run_ids):
            run_t = self._read(self._runs_path(rid), columns=["run_id"])
            if run_t is None:  # no usable runs file: its evals are not loaded either
                continue
            t = self._paired_evals(rid, (run_t.schema.metadata or {}).get(_TOKEN_KEY))
            if t is not None:
                tables.append(t)
        return _expand_diagnostics(tables, _concat(tables, evals_schema()))

    # ------------------------------------------------------------ migration

    def migrate(self) -> tuple[int, list[str]]:
        """Rewrite every file of an older schema or column set to the current one (atomic per
        file, write tokens kept). Returns (files rewritten, one line per file left as is)."""
        from .migrate import upgrade_evals, upgrade_run

        done, left = 0, []
        current = self._current_ids()
        for rid in self._run_ids_on_disk(self.runs_dir):
            for d, upgrade in ((self.runs_dir, upgrade_run), (self.evals_dir, upgrade_evals)):
                path = d / f"{rid}{SUFFIX}"
                try:
                    old = pq.read_table(path)
                except Exception as e:
                    left.append(f"{path}: unreadable ({_one_line(e)[:120]})")
                    continue
                md = old.schema.metadata or {}
                if (md.get(_COLUMNS_KEY) or b"").decode() in current:
                    continue
                try:
                    new = upgrade(old, rid)
                except ValueError as e:
                    left.append(f"{path}: {_one_line(e)}")
                    continue
                keep = {k: v for k, v in md.items() if k == _TOKEN_KEY}
                new = new.replace_schema_metadata({**_metadata(new.schema, None), **keep})
                tmps: list[Path] = []
                try:
                    os.replace(self._write_tmp(d, rid, new, tmps), path)
                    tmps.clear()
                except OSError as e:
                    raise ResultsDirError(write_error_message(f"could not rewrite {path}", e)) from None
                finally:
                    _remove_all(tmps)
                done += 1
        return done, left


def _metadata(schema: pa.Schema, token: bytes | None) -> dict[bytes, bytes]:
    meta = {_VERSION_KEY: SCHEMA_VERSION.encode(), _COLUMNS_KEY: columns_id(schema).encode()}
    if token is not None:
        meta[_TOKEN_KEY] = token
    return meta


def _expand_hparams(df: pd.DataFrame) -> pd.DataFrame:
    """hp_<name> columns for hyperparameters that only ``hparams_json`` holds (names no
    registered algorithm declares; files of other versions of the suite)."""
    if HPARAMS_JSON not in df.columns or not len(df):
        return df
    parsed = [json.loads(v) if isinstance(v, str) and v else {} for v in df[HPARAMS_JSON]]
    extra = sorted({k for p in parsed for k in p if HP_PREFIX + k not in df.columns})
    if extra:
        df = pd.concat([df, pd.DataFrame({HP_PREFIX + k: pd.Series([p.get(k) for p in parsed], dtype=object)
                                          for k in extra})], axis=1)
    return df


def _expand_diagnostics(tables: list[pa.Table], df: pd.DataFrame) -> pd.DataFrame:
    """diag_<name> columns for diagnostics that only the ``diagnostics`` map holds; the map
    itself is dropped (every entry is then a column)."""
    if DIAGNOSTICS not in df.columns:
        return df
    names: set[str] = set()
    for t in tables:
        if DIAGNOSTICS in t.schema.names and t.num_rows:
            for chunk in t.column(DIAGNOSTICS).chunks:
                names |= set(pc.unique(chunk.keys).to_pylist())
    extra = sorted(n for n in names if n is not None and DIAG_PREFIX + n not in df.columns)
    if extra:
        maps = [dict(m) if isinstance(m, list) else {} for m in df[DIAGNOSTICS]]
        df = pd.concat([df, pd.DataFrame({DIAG_PREFIX + n: [m.get(n, float("nan")) for m in maps] for n in extra},
                                         dtype="float64")], axis=1)
    return df.drop(columns=[DIAGNOSTICS])


# Public names of the helpers results.trials shares with this module (one atomic-write discipline).
one_line = _one_line
fsync_dir = _fsync_dir
concat_tables = _concat


def _naming(e: OSError, path: Path) -> OSError:
    """``e``, naming ``path`` if it names no file (a failed write() does not)."""
    return e if getattr(e, "filename", None) else OSError(e.errno, e.strerror or str(e), str(path))


def _remove_all(tmps: list[Path]) -> None:
    """Remove the temporaries left by a failed write (best effort)."""
    for t in tmps:
        try:
            os.remove(t)
        except OSError:
            pass
