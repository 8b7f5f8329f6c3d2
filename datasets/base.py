"""Types shared by every dataset source: what a dataset is, what loading returns, and its errors."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch


class DatasetUnavailable(RuntimeError):
    """The files a dataset needs are not where we looked (message: one line, names the path and the remedy)."""


class UnknownDataset(ValueError):
    """A dataset name that is not in the registry (message: one line listing the valid names)."""


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a dataset, known without loading it (the CLI validates requests against these)."""

    name: str
    num_classes: int
    input_shape: tuple[int, ...]  # (C, H, W) for images, (D,) for vectors
    offline: bool  # True if it needs no files from the user
    train_class_counts: tuple[int, ...]  # per-class counts of the training pool
    paper_n_val: int | None  # validation size the papers used; None if none
    description: str


@dataclass
class DatasetTensors:
    """A loaded dataset: float32 inputs, normalised with training-pool statistics, and int64 labels.

    x_train: [N, *input_shape]; y_train: [N]; x_test: [M, *input_shape]; y_test: [M];
    x_extra_unlabeled: [K, *input_shape] (STL-10's unlabeled split) or None.
    Loads may be cached in-process, so treat the tensors as read-only (clone before mutating).
    """

    info: DatasetInfo
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    x_extra_unlabeled: torch.Tensor | None = None


def _no_files_needed(data_root: str | None, download: bool) -> None:
    """check_available for offline sets: nothing to check."""


@dataclass(frozen=True)
class Source:
    """One registry entry: static info plus how to check for and load the data.

    load(data_root, download) -> DatasetTensors; check(data_root, download) raises DatasetUnavailable or returns.
    """

    info: DatasetInfo
    load: Callable[[str | None, bool], DatasetTensors]
    check: Callable[[str | None, bool], None] = _no_files_needed
