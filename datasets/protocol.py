"""The scarce-label protocol: labeled / validation / unlabeled splits of a training pool.

Classification: class-balanced ("n labels" = n / C per class). Regression: "n labeled images", drawn
uniformly without regard to the targets. Either way the validation set is drawn the same way from the
rest of the pool, and a split is a pure function of (dataset, pool, n_labels, n_val, split_seed): its
generator is seeded from the split seed and the dataset name only, so it never depends on the training
seed or on any global RNG state.
"""
from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from .base import REGRESSION, DatasetInfo


class SplitError(ValueError):
    """A labeled/validation request the training pool cannot satisfy (one-line message)."""


# "scarce": validation as scarce as the labels (Oliver et al. 2018); "paper": the size the papers used.
VAL_PROTOCOLS = ("scarce", "paper")


@dataclass(frozen=True, eq=False)  # eq=False: comparing numpy fields with == is ambiguous; compare split_hash
class Split:
    """Indices into the training pool: labeled, val, unlabeled (each sorted int64, read-only, pairwise disjoint,
    together exactly range(N)), and split_hash: 16 hex chars of sha256 over the dataset name and the three arrays."""

    labeled: np.ndarray
    val: np.ndarray
    unlabeled: np.ndarray
    split_hash: str


def resolve_n_val(info: DatasetInfo, n_labels: int, protocol: str = "scarce", n_val: int | None = None) -> int:
    """Validation-set size: an explicit n_val wins; 'scarce' -> n_labels; 'paper' -> info.paper_n_val."""
    if n_val is not None:
        return int(n_val)
    if protocol == "scarce":
        return int(n_labels)
    if protocol == "paper":
        if info.paper_n_val is None:
            raise SplitError(f"{info.name} has no paper validation size; use the 'scarce' protocol or pass n_val")
        return info.paper_n_val
    raise SplitError(f"unknown validation protocol {protocol!r}; valid: {', '.join(VAL_PROTOCOLS)}")


def _check_counts(name: str, num_classes: int, class_counts: Sequence[int], n_labels: int, n_val: int) -> None:
    """Raise SplitError unless n_labels / n_val can be drawn class-balanced from a pool with these class counts."""
    k = num_classes
    if n_labels <= 0:
        raise SplitError(f"{name}: n_labels must be positive, got {n_labels}")
    if n_labels < k:
        raise SplitError(f"{name}: fewer labels than classes ({n_labels} < {k}); need at least one label per class")
    if n_labels % k:
        raise SplitError(f"{name}: n_labels={n_labels} must be a multiple of the {k} classes (class-balanced)")
    if n_val < 0:
        raise SplitError(f"{name}: n_val must be >= 0, got {n_val}")
    if n_val % k:
        raise SplitError(f"{name}: n_val={n_val} must be a multiple of the {k} classes (class-balanced)")
    per_class = n_labels // k + n_val // k
    smallest = min(class_counts)
    if per_class > smallest:
        raise SplitError(
            f"{name}: more labels than exist: {n_labels // k} labeled + {n_val // k} val per class "
            f"> {smallest} examples in the smallest class"
        )
    if sum(class_counts) - n_labels - n_val <= 0:
        raise SplitError(f"{name}: n_labels + n_val = {n_labels + n_val} leaves no unlabeled data")


def _check_sizes(name: str, pool: int, n_labels: int, n_val: int) -> None:
    """Raise SplitError unless n_labels labeled + n_val validation images leave unlabeled ones in a pool of `pool`."""
    if n_labels <= 0:
        raise SplitError(f"{name}: n_labels must be positive, got {n_labels}")
    if n_val < 0:
        raise SplitError(f"{name}: n_val must be >= 0, got {n_val}")
    if n_labels + n_val > pool:
        raise SplitError(f"{name}: more labels than exist: {n_labels} labeled + {n_val} val > {pool} images in the pool")
    if n_labels + n_val == pool:
        raise SplitError(f"{name}: n_labels + n_val = {n_labels + n_val} leaves no unlabeled data")


def validate_request(info: DatasetInfo, n_labels: int, n_val: int) -> None:
    """Raise SplitError for a request the dataset cannot satisfy, using only static info (no loading)."""
    if info.task == REGRESSION:
        _check_sizes(info.name, info.n_train, n_labels, n_val)
    else:
        _check_counts(info.name, info.num_classes, info.train_class_counts, n_labels, n_val)


def split_hash(dataset: str, labeled: np.ndarray, val: np.ndarray, unlabeled: np.ndarray) -> str:
    """16 hex chars of sha256 over the dataset name and the three index arrays (lengths included, so
    moving an index from one set to the next changes the hash)."""
    h = hashlib.sha256(dataset.encode())
    for arr in (labeled, val, unlabeled):
        a = np.ascontiguousarray(arr, dtype="<i8")
        h.update(b"|" + len(a).to_bytes(8, "little") + a.tobytes())
    return h.hexdigest()[:16]


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.sort(a).astype(np.int64)
    a.setflags(write=False)  # the hash describes these arrays; keep them from drifting
    return a


def make_split(
    dataset: str,
    y_train: np.ndarray | torch.Tensor,
    num_classes: int,
    n_labels: int,
    n_val: int,
    split_seed: int,
) -> Split:
    """Class-balanced split of a training pool with labels y_train [N] (int, 0..num_classes-1).

    labeled: n_labels / num_classes per class; val: n_val / num_classes per class; unlabeled: the rest.
    Raises SplitError (one line) when the actual class counts cannot satisfy the request.
    """
    y = y_train.detach().cpu().numpy() if isinstance(y_train, torch.Tensor) else np.asarray(y_train)
    y = y.astype(np.int64).reshape(-1)
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise SplitError(f"{dataset}: labels must lie in 0..{num_classes - 1}, found {y.min()}..{y.max()}")
    counts = np.bincount(y, minlength=num_classes)
    _check_counts(dataset, num_classes, counts.tolist(), n_labels, n_val)

    # Seeded by (split seed, dataset name) only: the same split for every algorithm and training seed.
    rng = np.random.default_rng([split_seed, zlib.crc32(dataset.encode())])
    n_lab_c, n_val_c = n_labels // num_classes, n_val // num_classes
    labeled, val = [], []
    for c in range(num_classes):
        members = rng.permutation(np.flatnonzero(y == c))
        labeled.append(members[:n_lab_c])
        val.append(members[n_lab_c : n_lab_c + n_val_c])
    return _split_of(dataset, len(y), np.concatenate(labeled), np.concatenate(val))


def _split_of(dataset: str, n: int, labeled: np.ndarray, val: np.ndarray) -> Split:
    """The Split whose labeled and val indices are given; unlabeled is the rest of range(n)."""
    labeled_a, val_a = _readonly(labeled), _readonly(val)
    taken = np.zeros(n, dtype=bool)
    taken[labeled_a] = True
    taken[val_a] = True
    unlabeled_a = _readonly(np.flatnonzero(~taken))
    return Split(labeled_a, val_a, unlabeled_a, split_hash(dataset, labeled_a, val_a, unlabeled_a))


def make_regression_split(dataset: str, n_train: int, n_labels: int, n_val: int, split_seed: int) -> Split:
    """Split of a regression pool of n_train images: n_labels labeled, n_val validation, the rest unlabeled.

    One permutation of range(n_train) from the (split seed, dataset name) generator: labeled is its first
    n_labels entries, val the next n_val (no class balance: the targets play no part). Raises SplitError (one
    line) when the pool is too small.
    """
    _check_sizes(dataset, n_train, n_labels, n_val)
    rng = np.random.default_rng([split_seed, zlib.crc32(dataset.encode())])
    perm = rng.permutation(n_train)
    return _split_of(dataset, n_train, perm[:n_labels], perm[n_labels : n_labels + n_val])


def split_for(info: DatasetInfo, y_train: np.ndarray | torch.Tensor, n_labels: int, n_val: int,
              split_seed: int) -> Split:
    """The protocol's split of a loaded training pool, by task: :func:`make_split` (class-balanced, y_train [N]
    int) or :func:`make_regression_split` (y_train [N, K] float; only N matters)."""
    if info.task == REGRESSION:
        return make_regression_split(info.name, len(y_train), n_labels, n_val, split_seed)
    return make_split(info.name, y_train, info.num_classes, n_labels, n_val, split_seed)


def holdout_split(y_labeled: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split labeled positions into (training, hold-out) for meta rules with a *separate* hold-out set.

    Classification (y_labeled [N] int): class-balanced: from each class with n_c samples,
    round(fraction * n_c) go to the hold-out set, at least 1 and at most n_c - 1 (so every class
    stays in both). Regression (y_labeled [N, K] float targets): round(fraction * N) positions
    drawn uniformly, at least 1 and at most N - 1. A function of the labels, ``fraction`` and
    ``seed`` only (the split seed), so every algorithm sees the same sets. Returns two sorted
    int64 arrays of positions into y_labeled.
    """
    if not 0.0 < fraction < 1.0:
        raise SplitError(f"hold-out fraction must be in (0, 1), got {fraction}")
    y = np.asarray(y_labeled)
    rng = np.random.default_rng([seed, zlib.crc32(b"holdout")])
    if y.ndim == 2:
        if len(y) < 2:
            raise SplitError(f"{len(y)} labeled sample(s): a separate hold-out set needs at least 2")
        idx = rng.permutation(len(y))
        k = min(len(y) - 1, max(1, int(round(fraction * len(y)))))
        return np.sort(idx[k:]).astype(np.int64), np.sort(idx[:k]).astype(np.int64)
    train, hold = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        if idx.size < 2:
            raise SplitError(f"class {int(c)} has {idx.size} labeled sample(s): a separate hold-out set needs at least 2 per class")
        k = min(idx.size - 1, max(1, int(round(fraction * idx.size))))
        hold.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)).astype(np.int64), np.sort(np.concatenate(hold)).astype(np.int64)
