"""Where results and checkpoints live: a local folder, or a filesystem URI as Ray's own
``storage_path`` takes it (``s3://``, ``gs://``, ``abfs://``, ``file://``), through ``pyarrow.fs``.

Every write publishes whole files, so a reader never sees half of one:

* a local folder (or ``file://``) writes a ``.tmp-*`` file beside the target, fsyncs it and
  renames it onto its name; several files are published together by writing every
  temporary first and renaming them in order afterwards;
* an object store has no rename (``pyarrow``'s S3/GCS/Azure ``move`` is a copy and a delete),
  but it never shows a partly written object: an upload becomes visible whole when it
  completes, or not at all if the writer dies first, and replacing an object is atomic
  (S3 and GCS are strongly consistent). Several files are published in order, the one that
  vouches for the others last (a run's ``runs/`` file, a checkpoint's manifest).

Locations are strings: an absolute local path, or the URI as given (query parameters such as
``?endpoint_override=http://127.0.0.1:9000&scheme=http`` included).
"""
from __future__ import annotations

import functools
import io
import os
import re
import uuid
from typing import Iterable
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

TMP_PREFIX = ".tmp-"
OBJECT_SCHEMES = ("s3", "gs", "gcs", "abfs", "abfss")


class ResultsDirError(RuntimeError):
    """The results directory cannot be used (one-line message)."""


def one_line(e: BaseException) -> str:
    msg = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return " ".join(str(msg).split())


def scheme_of(location: str) -> str:
    """'s3' for 's3://b/p', '' for a plain path."""
    head, sep, _ = location.partition("://")
    return head.lower() if sep and re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", head) else ""


def normalize(location: str) -> str:
    """A location string every process agrees on: a plain path or ``file://`` URI becomes an
    absolute local path; an object-store URI stays as given. ValueError (one line) for a
    scheme this suite cannot publish to atomically."""
    scheme = scheme_of(location)
    if not scheme:
        return os.path.abspath(location)
    if scheme == "file":
        return os.path.abspath(urlsplit(location).path or "/")
    if scheme not in OBJECT_SCHEMES:
        raise ValueError(f"--results-dir {location!r}: scheme {scheme}:// is not supported (a local or mounted path, "
                         f"file://, s3://, gs:// or abfs://)")
    try:
        _resolve(location)
    except (ValueError, OSError, pa.ArrowException) as e:
        raise ValueError(f"--results-dir {location!r}: {one_line(e)}") from None
    return location


def is_local(location: str) -> bool:
    return not scheme_of(location)


@functools.lru_cache(maxsize=32)
def _resolve(location: str) -> tuple[pafs.FileSystem, str]:
    fs, path = pafs.FileSystem.from_uri(location)
    return fs, path.rstrip("/")


def display(location: str) -> str:
    """The location without its query string (endpoint settings), for messages."""
    return location.split("?", 1)[0] if scheme_of(location) else location


def _fsync_dir(path: str) -> None:
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


def table_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


class Storage:
    """Files under one location, named by '/'-separated paths relative to it."""

    def __init__(self, location: str) -> None:
        self.location = normalize(location)
        self.local = is_local(self.location)
        if not self.local:
            self.fs, self.base = _resolve(self.location)

    def __repr__(self) -> str:
        return f"Storage({display(self.location)!r})"

    def path(self, rel: str = "") -> str:
        """Absolute local path, or the path inside the object store's filesystem."""
        base = self.location if self.local else self.base
        return f"{base}/{rel}".rstrip("/") if rel else base

    def show(self, rel: str = "") -> str:
        """What messages print for ``rel``: a local path or ``scheme://bucket/key``."""
        if self.local:
            return self.path(rel)
        return f"{scheme_of(self.location)}://{self.path(rel)}"

    # ------------------------------------------------------------------ writing

    def publish(self, files: Iterable[tuple[str, bytes]]) -> None:
        """Write each (rel, data) whole, in the given order; OSError on failure (with the
        path of the file being written). Locally every temporary is complete before the
        first rename; files already in place are never touched by a failed write."""
        files = list(files)
        if not self.local:
            for rel, data in files:
                self._put_object(rel, data)
            return
        tmps: list[str] = []
        try:
            staged = []
            for rel, data in files:
                target = self.path(rel)
                d = os.path.dirname(target)
                os.makedirs(d, exist_ok=True)
                name = os.path.basename(target)
                stem, dot, ext = name.rpartition(".")
                tmp = os.path.join(d, f"{TMP_PREFIX}{stem if dot else name}-{uuid.uuid4().hex[:8]}{dot}{ext if dot else ''}")
                tmps.append(tmp)
                try:
                    with open(tmp, "wb") as f:
                        f.write(data)
                        f.flush()
                        os.fsync(f.fileno())
                except OSError as e:
                    if not getattr(e, "filename", None):  # a failed write() names no file: name the target
                        e = OSError(e.errno, e.strerror or str(e), target)
                    raise e from None
                staged.append((tmp, target))
            for tmp, target in staged:
                os.replace(tmp, target)
                tmps.remove(tmp)
                _fsync_dir(os.path.dirname(target))
        finally:
            for t in tmps:
                try:
                    os.remove(t)
                except OSError:
                    pass

    def _put_object(self, rel: str, data: bytes) -> None:
        target = self.path(rel)
        try:
            with self.fs.open_output_stream(target) as out:
                out.write(data)
        except OSError as e:
            raise OSError(getattr(e, "errno", None) or 5, one_line(e), self.show(rel)) from None

    def delete(self, rel: str) -> None:
        """Remove one file if it exists (errors ignored: a leftover is harmless)."""
        try:
            if self.local:
                os.remove(self.path(rel))
            else:
                self.fs.delete_file(self.path(rel))
        except (OSError, pa.ArrowException):
            pass

    def delete_dir(self, rel: str) -> None:
        """Remove a folder and everything in it if it exists (errors ignored)."""
        import shutil

        if self.local:
            shutil.rmtree(self.path(rel), ignore_errors=True)
            return
        try:
            self.fs.delete_dir(self.path(rel))
        except (OSError, pa.ArrowException):
            pass

    def probe(self, rel_dir: str = "") -> None:
        """Write and remove a small object under ``rel_dir``; OSError if that fails."""
        rel = f"{rel_dir}/{TMP_PREFIX}probe-{uuid.uuid4().hex}".lstrip("/")
        self._put_object(rel, b"probe")
        self.delete(rel)

    # ------------------------------------------------------------------ reading

    def list(self, rel_dir: str) -> list[str]:
        """Names of the files directly in ``rel_dir`` (empty if it does not exist)."""
        if self.local:
            try:
                return sorted(n for n in os.listdir(self.path(rel_dir)) if os.path.isfile(self.path(f"{rel_dir}/{n}")))
            except FileNotFoundError:
                return []
        infos = self.fs.get_file_info(pafs.FileSelector(self.path(rel_dir), allow_not_found=True))
        return sorted(i.base_name for i in infos if i.type == pafs.FileType.File)

    def exists(self, rel: str) -> bool:
        if self.local:
            return os.path.exists(self.path(rel))
        return self.fs.get_file_info(self.path(rel)).type != pafs.FileType.NotFound

    def read_bytes(self, rel: str) -> bytes | None:
        """The file's contents, or None if it does not exist."""
        try:
            if self.local:
                with open(self.path(rel), "rb") as f:
                    return f.read()
            with self.fs.open_input_stream(self.path(rel)) as f:
                return f.read()
        except FileNotFoundError:
            return None

    def read_table(self, rel: str, columns: list[str] | None = None) -> pa.Table:
        """A Parquet file; FileNotFoundError if it does not exist."""
        if self.local:
            return pq.read_table(self.path(rel), columns=columns)
        data = self.read_bytes(rel)
        if data is None:
            raise FileNotFoundError(self.show(rel))
        return pq.read_table(io.BytesIO(data), columns=columns)

    # ------------------------------------------------------------------ Ray

    def ray_storage(self, rel: str) -> tuple[str, pafs.FileSystem | None]:
        """(storage_path, storage_filesystem) for Ray Tune / Train's RunConfig at ``rel``."""
        if self.local:
            return self.path(rel), None
        return self.path(rel), self.fs
