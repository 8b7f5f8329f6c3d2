"""An on-disk cache for datasets the project generates: regenerating them in every Ray trial process costs
seconds, reading them back a few milliseconds.

An entry is keyed by everything its content depends on (the caller passes the generator's source code and
numpy's version along with its arguments), so a cached entry always equals a fresh generation; a missing,
truncated or mismatched file is generated again, and a cache directory that cannot be written only costs the
regeneration. Entries are written to a temporary file and renamed, so concurrent trials never read half a file.
"""
from __future__ import annotations

import hashlib
import os
import zipfile
from typing import Callable

import numpy as np

#: where entries live (``$XDG_CACHE_HOME/meta-ssl-bench/generated``; a module attribute so tests can redirect it)
CACHE_DIR = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
                         "meta-ssl-bench", "generated")


def cached_arrays(name: str, key: tuple, shapes: dict[str, tuple[int, ...]],
                  make: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The arrays ``make()`` returns (names -> arrays of the given shapes), from the cache entry for (name, key)
    if there is a valid one, else generated and stored."""
    digest = hashlib.sha256(repr((name, key)).encode()).hexdigest()[:20]
    path = os.path.join(CACHE_DIR, f"{name}-{digest}.npz")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        if {k: a.shape for k, a in arrays.items()} == shapes:
            return arrays
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        pass
    arrays = make()
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(CACHE_DIR, exist_ok=True)
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except OSError:  # read-only home, full disk: the cache is only an optimisation
        if os.path.exists(tmp):
            os.remove(tmp)
    return arrays
