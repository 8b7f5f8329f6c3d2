"""Run checkpoints in the results store, keyed by run id, that cannot run code.

Layout (``results.fs``: a local folder or an object-store URI)::

    root/checkpoints/<run_id>/step-<S>.rank-<r>.pt   each worker's state at step S (write-once names)
    root/checkpoints/<run_id>/manifest.json          which step is complete, written last by rank 0

Every worker writes its own file (BatchNorm statistics, and so evaluations, are per worker);
rank 0 writes the manifest once all of them are in place and then deletes the files of older
steps, so a reader (the next attempt) sees the last complete step, never a half-written one.
The manifest carries the run id and the code version (:func:`code_version`) the state belongs
to: a checkpoint of another run or of other code is never loaded.

A ``.pt`` file holds tensors and plain containers only and is read with
``torch.load(weights_only=True)``, which unpickles tensors, numbers, strings, None and
dict/list/tuple containers and refuses every other object. A file in a results directory can
be planted by anyone who can write there; an unrestricted unpickler would run whatever it
names on resume. A checkpoint that does not load this way is refused with one line
(:class:`CheckpointError`), before anything in it is used.
"""
from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import pickle
import sys
from pathlib import Path
from typing import Any

import torch

from results.fs import Storage

CKPT_FILE = "state.pt"
CKPT_DIR = "checkpoints"
MANIFEST = "manifest.json"
_PLAIN = (bool, int, float, str, bytes, type(None))
_REPO = Path(__file__).resolve().parents[1]
# What a run computes depends on these: a change to any of them makes old checkpoints unusable.
_TRAINING_CODE = ("algorithms", "datasets", "bench/engine.py", "bench/sampling.py", "bench/config.py",
                  "bench/checkpoint.py", "bench/resume.py")


class CheckpointError(RuntimeError):
    """A checkpoint cannot be saved or loaded safely (one-line message)."""


def check_plain(value: Any, where: str = "state") -> None:
    """CheckpointError unless ``value`` holds only tensors, numbers, strings, None and
    dict / list / tuple containers of them (what ``weights_only=True`` loads)."""
    if isinstance(value, torch.Tensor) or isinstance(value, _PLAIN):
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, (str, int)):
                raise CheckpointError(f"checkpoint key {where}[{k!r}] is a {type(k).__name__}, not str or int")
            check_plain(v, f"{where}[{k!r}]")
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            check_plain(v, f"{where}[{i}]")
        return
    raise CheckpointError(f"checkpoint entry {where} is a {type(value).__module__}.{type(value).__qualname__}; "
                          f"checkpoints hold only tensors and plain containers")


def state_bytes(state: dict) -> bytes:
    """``state`` (checked by :func:`check_plain`) serialised by ``torch.save``."""
    check_plain(state)
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def state_from_bytes(data: bytes, where: str) -> dict:
    """The state in ``data`` loaded with ``weights_only=True``; CheckpointError (one line,
    naming ``where``) when it is truncated or holds anything but tensors and plain containers."""
    try:
        state = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError, AttributeError) as e:
        reason = " ".join(str(e).split()).split(" Check the documentation")[0]
        raise CheckpointError(f"refusing checkpoint {where}: it does not load as tensors and plain containers "
                              f"(torch.load weights_only=True: {reason[:200]})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"refusing checkpoint {where}: it holds a {type(state).__name__}, not a state dict")
    return state


def save_state(state: dict, directory: str) -> str:
    """Write ``state`` to ``directory/state.pt``; returns the path."""
    path = os.path.join(directory, CKPT_FILE)
    with open(path, "wb") as f:
        f.write(state_bytes(state))
    return path


def load_state(directory: str) -> dict:
    """The state in ``directory/state.pt`` (:func:`state_from_bytes`); CheckpointError when missing."""
    path = os.path.join(directory, CKPT_FILE)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} is missing") from None
    return state_from_bytes(data, path)


@functools.cache
def code_version() -> str:
    """16 hex chars of sha256 over the training code (``_TRAINING_CODE``), the plugin modules
    (``META_SSL_BENCH_PLUGINS``) and torch's version: what a checkpoint must match to be used."""
    from algorithms.registry import PLUGINS_ENV

    files: list[Path] = []
    for rel in _TRAINING_CODE:
        p = _REPO / rel
        files += sorted(p.rglob("*.py")) if p.is_dir() else [p]
    for name in filter(None, (n.strip() for n in os.environ.get(PLUGINS_ENV, "").split(","))):
        mod = sys.modules.get(name)
        if mod is not None and getattr(mod, "__file__", None):
            files.append(Path(mod.__file__))
    h = hashlib.sha256(f"torch {torch.__version__}\n".encode())
    for f in files:
        h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


class RunCheckpoints:
    """The checkpoint folder of one run, as one worker (``rank`` of ``world_size``) sees it."""

    def __init__(self, results_dir: str, run_id: str, rank: int = 0, world_size: int = 1) -> None:
        self.storage = Storage(results_dir)
        self.run_id, self.rank, self.world_size = run_id, rank, world_size
        self.dir = f"{CKPT_DIR}/{run_id}"

    def show(self, name: str = "") -> str:
        return self.storage.show(f"{self.dir}/{name}".rstrip("/"))

    @staticmethod
    def file_name(step: int, rank: int) -> str:
        return f"step-{step:09d}.rank-{rank}.pt"

    def manifest(self) -> dict | None:
        """The manifest, or None when there is none or it is not a JSON object."""
        data = self.storage.read_bytes(f"{self.dir}/{MANIFEST}")
        if data is None:
            return None
        try:
            m = json.loads(data)
        except ValueError:
            return None
        return m if isinstance(m, dict) else None

    def write_manifest(self, manifest: dict) -> None:
        """Publish the manifest (rank 0); OSError on failure."""
        self.storage.publish([(f"{self.dir}/{MANIFEST}", json.dumps(manifest, sort_keys=True).encode())])

    def save(self, step: int, state: dict) -> str:
        """Write this worker's state at ``step``; returns the file's name (OSError on failure)."""
        name = self.file_name(step, self.rank)
        self.storage.publish([(f"{self.dir}/{name}", state_bytes(state))])
        return name

    def load(self, step: int) -> dict:
        """This worker's state at ``step``; CheckpointError when missing or refused."""
        name = self.file_name(step, self.rank)
        data = self.storage.read_bytes(f"{self.dir}/{name}")
        if data is None:
            raise CheckpointError(f"checkpoint {self.show(name)} is missing")
        return state_from_bytes(data, self.show(name))

    def prune(self, keep: set[str]) -> None:
        """Delete this run's state files other than ``keep`` (rank 0, after a manifest)."""
        for name in self.storage.list(self.dir):
            if name.startswith("step-") and name not in keep:
                self.storage.delete(f"{self.dir}/{name}")

    def clear(self) -> None:
        """Delete the run's checkpoint folder (its rows are written), and checkpoints/ if now empty."""
        self.storage.delete_dir(self.dir)
        if self.storage.local:
            try:
                os.rmdir(self.storage.path(CKPT_DIR))
            except OSError:
                pass
