"""Parquet results store: one runs file and one evals file per run, published whole.

Layout (under a local folder or a filesystem URI: ``results.fs``)::

    root/runs/<run_id>.parquet    one row (the run)
    root/evals/<run_id>.parquet   one row per evaluation point

The evals file is published first and the runs file last, so a runs file present means the
run's rows are complete (locally: both are written to ``.tmp-*`` files and fsynced before
either is renamed; on an object store each is one upload, visible whole or not at all). A
random write token is stored in both files' Arrow metadata; the loader drops an evals file
whose token differs from its runs file's (which only a kill between the two publications of
a re-write can leave behind); such a run, like one whose evals file is unreadable, does not
count as finished and is re-run.

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

from .frames import concat as _concat
from .fs import TMP_PREFIX, ResultsDirError, Storage, one_line, table_bytes
from .schema import (DIAG_PREFIX, DIAGNOSTICS, HP_PREFIX, HPARAMS_JSON, SCHEMA_VERSION, columns_id, evals_schema,
                     runs_schema, to_tables)

SUFFIX = ".parquet"
_TOKEN_KEY = b"bench.write_token"
_VERSION_KEY = b"bench.schema_version"
_COLUMNS_KEY = b"bench.columns"
_NOTED: set[str] = set()

_one_line = one_line


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


class ResultStore:
    """The runs and evals tables under ``root``: a local folder or a filesystem URI."""

    def __init__(self, root: str | os.PathLike):
        self.storage = Storage(os.fspath(root))
        loc = self.storage.location
        # Local stores keep Path attributes (their callers join paths); remote ones show their URI.
        self.root: Path | str = Path(loc) if self.storage.local else self.storage.show()
        self.runs_dir = self.root / "runs" if self.storage.local else self.storage.show("runs")
        self.evals_dir = self.root / "evals" if self.storage.local else self.storage.show("evals")

    def __repr__(self) -> str:
        return f"ResultStore({str(self.root)!r})"

    def exists(self) -> bool:
        """Whether any run has been written here (a runs/ folder or prefix with files)."""
        try:
            return bool(self.storage.list("runs")) if not self.storage.local else Path(self.root, "runs").is_dir()
        except OSError as e:
            raise ResultsDirError(f"cannot list results directory {self.root}: {_one_line(e)}") from None

    # ------------------------------------------------------------ writing

    def check_writable(self) -> None:
        """ResultsDirError (one line) unless rows can be written under the root. Creates
        nothing: a probe file is written and removed in each of root, runs/ and evals/ that
        exists, else in the nearest existing folder above the root (on an object store: a
        probe object under the root)."""
        if not self.storage.local:
            try:
                self.storage.probe()
            except OSError as e:
                raise ResultsDirError(f"results directory {self.root} is not writable: {_one_line(e)}") from None
            return
        root = Path(self.root)
        existing = [d for d in (root, root / "runs", root / "evals") if d.exists()]
        if not existing:
            up = root.parent
            while not up.exists() and up != up.parent:
                up = up.parent
            existing = [up]
        for d in existing:
            where = "" if d == root else f" ({d.name}/)" if d.parent == root else f" ({d} is the nearest existing folder)"
            if not d.is_dir():
                raise ResultsDirError(f"results directory {root} is not writable{where}: {d} exists and is not a directory")
            probe = d / f"{TMP_PREFIX}probe-{uuid.uuid4().hex}"
            try:
                with open(probe, "wb") as f:
                    f.write(b"probe")
                os.remove(probe)
            except OSError as e:
                raise ResultsDirError(f"results directory {root} is not writable{where}: {_one_line(e)}") from None

    def write_run(self, run_row: Mapping[str, Any], eval_rows: Sequence[Mapping[str, Any]]) -> None:
        """Validate and write one run (replacing any earlier rows of the same run_id)."""
        runs_t, evals_t = to_tables(run_row, eval_rows)  # ValueError on bad rows
        run_id = runs_t.column("run_id")[0].as_py()
        token = uuid.uuid4().hex.encode()
        runs_t = runs_t.replace_schema_metadata(_metadata(runs_t.schema, token))
        evals_t = evals_t.replace_schema_metadata(_metadata(evals_t.schema, token))
        try:
            # The evals file first, the runs file (which vouches for it) last.
            self.storage.publish([(f"evals/{run_id}{SUFFIX}", table_bytes(evals_t)),
                                  (f"runs/{run_id}{SUFFIX}", table_bytes(runs_t))])
        except OSError as e:
            if not getattr(e, "filename", None):
                e = OSError(e.errno, e.strerror or str(e), self.storage.show())
            raise ResultsDirError(write_error_message(f"could not write the results of run {run_id}", e)) from None

    def _runs_path(self, run_id: str) -> str:
        return f"runs/{run_id}{SUFFIX}"

    def write_table(self, rel: str, table: pa.Table) -> None:
        """Publish ``table`` at ``root/rel`` (e.g. ``artifacts/<run_id>.parquet``) whole or not at
        all, as the runs and evals files are; ResultsDirError (one line) if it cannot be written."""
        try:
            self.storage.publish([(rel, table_bytes(table))])
        except OSError as e:
            if not getattr(e, "filename", None):
                e = OSError(e.errno, e.strerror or str(e), self.storage.show(rel))
            raise ResultsDirError(write_error_message(f"could not write {rel}", e)) from None

    def read_table(self, rel: str) -> pa.Table | None:
        """The table at ``root/rel``; None if there is none or it is unreadable (said once on stderr)."""
        try:
            return self.storage.read_table(rel)
        except FileNotFoundError:
            return None
        except Exception as e:  # corrupt / truncated: the caller treats it as missing
            shown = self.storage.show(rel)
            note(f"skipping unreadable file {shown} ({_cause(e)})", key=shown)
            return None

    def table_names(self, folder: str) -> list[str]:
        """Names (without ``.parquet``) of the complete tables in ``root/folder``."""
        return self._run_ids_on_disk(folder)

    def _evals_path(self, run_id: str) -> str:
        return f"evals/{run_id}{SUFFIX}"

    # ------------------------------------------------------------ reading

    def _run_ids_on_disk(self, d: str) -> list[str]:
        try:
            names = self.storage.list(d)
        except OSError as e:
            raise ResultsDirError(f"cannot list results directory {self.storage.show(d)}: {_one_line(e)}") from None
        return sorted(n[: -len(SUFFIX)] for n in names
                      if n.endswith(SUFFIX) and not n.startswith(TMP_PREFIX) and not n.startswith("."))

    def _selected(self, run_ids: Iterable[str] | None) -> list[str]:
        on_disk = self._run_ids_on_disk("runs")
        if run_ids is None:
            return on_disk
        if isinstance(run_ids, str):
            run_ids = [run_ids]
        wanted = set(run_ids)
        return [r for r in on_disk if r in wanted]

    def _read(self, rel: str, columns: list[str] | None = None) -> pa.Table | None:
        shown = self.storage.show(rel)
        try:
            table = self.storage.read_table(rel, columns=columns)
        except FileNotFoundError:
            return None
        except Exception as e:  # corrupt / truncated / unreadable: skip, do not crash
            note(f"skipping unreadable results file {shown} ({_cause(e)}); {_RERUN}", key=shown)
            return None
        md = table.schema.metadata or {}
        if md.get(_COLUMNS_KEY) is None or md.get(_COLUMNS_KEY).decode() not in self._current_ids():
            version = (md.get(_VERSION_KEY) or b"1").decode()
            kind = rel.split("/", 1)[0]
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
        shown = self.storage.show(ev_path)
        t = self._read(ev_path, columns=columns)
        if t is None:
            if not self.storage.exists(ev_path):
                note(f"run {rid} has a runs file but no evals file {shown}; {_RERUN}", key=shown)
            return None
        ev_token = (t.schema.metadata or {}).get(_TOKEN_KEY)
        if run_token is not None and ev_token != run_token:
            note(f"skipping evals file {shown}: it was not written with the runs file beside it (an interrupted "
                 f"re-write); {_RERUN}", key=shown)
            return None
        return t

    def finished_run_ids(self, statuses: Iterable[str] = ("ok", "diverged")) -> set[str]:
        """Run ids whose runs file has a status in ``statuses`` and whose evals file is
        readable and paired with it (same write token); any other run is re-run."""
        statuses = {statuses} if isinstance(statuses, str) else set(statuses)
        out: set[str] = set()
        for rid in self._run_ids_on_disk("runs"):
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
        for rid in self._run_ids_on_disk("runs"):
            for kind, upgrade in (("runs", upgrade_run), ("evals", upgrade_evals)):
                rel = f"{kind}/{rid}{SUFFIX}"
                path = self.storage.show(rel)
                try:
                    old = self.storage.read_table(rel)
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
                try:
                    self.storage.publish([(rel, table_bytes(new))])
                except OSError as e:
                    raise ResultsDirError(write_error_message(f"could not rewrite {path}", e)) from None
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


# Public names of the helpers results.trials shares with this module.
concat_tables = _concat
