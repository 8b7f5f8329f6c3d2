"""Types shared by every dataset source: what a dataset is, what loading returns, and its errors."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

CLASSIFICATION = "classification"
REGRESSION = "regression"
TASKS = (CLASSIFICATION, REGRESSION)

# The metric each task reports (the name a results row would carry): the classification error, and the
# papers' landmark error, the mean point-to-point distance over the inter-ocular distance (datasets.landmarks).
METRIC_OF_TASK = {CLASSIFICATION: "error", REGRESSION: "nme_iod"}


class DatasetUnavailable(RuntimeError):
    """The files a dataset needs are not where we looked (message: one line, names the path and the remedy)."""


class UnknownDataset(ValueError):
    """A dataset name that is not in the registry (message: one line listing the valid names)."""


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a dataset, known without loading it (the CLI validates requests against these).

    Classification sets give ``num_classes`` and ``train_class_counts``; regression sets give
    ``num_classes = 0``, ``train_class_counts = ()``, the target width ``target_dim`` (K) and the
    training-pool size ``pool_size``. ``num_outputs`` and ``n_train`` answer for both.
    """

    name: str
    num_classes: int
    input_shape: tuple[int, ...]  # (C, H, W) for images, (D,) for vectors
    offline: bool  # True if it needs no files from the user
    train_class_counts: tuple[int, ...]  # per-class counts of the training pool (empty for regression)
    paper_n_val: int | None  # validation size the papers used; None if none
    description: str
    task: str = CLASSIFICATION
    target_dim: int = 0  # regression: K, the width of the float targets [N, K]
    pool_size: int = 0  # regression: size of the training pool (classification: sum of the class counts)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"{self.name}: task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if self.task == REGRESSION and (self.target_dim < 1 or self.pool_size < 1 or self.num_classes
                                        or self.train_class_counts):
            raise ValueError(f"{self.name}: a regression set needs target_dim >= 1, pool_size >= 1 and no classes")
        if self.task == CLASSIFICATION and (len(self.train_class_counts) != self.num_classes or self.target_dim):
            raise ValueError(f"{self.name}: a classification set needs one class count per class and no target_dim")

    @property
    def n_train(self) -> int:
        """Size of the training pool the labeled, validation and unlabeled sets are drawn from."""
        return self.pool_size if self.task == REGRESSION else sum(self.train_class_counts)

    @property
    def num_outputs(self) -> int:
        """Width of a network's output: the number of classes, or K for regression."""
        return self.target_dim if self.task == REGRESSION else self.num_classes

    @property
    def metric(self) -> str:
        """Name of the metric this dataset's results report (see :data:`METRIC_OF_TASK`)."""
        return METRIC_OF_TASK[self.task]


@dataclass
class DatasetTensors:
    """A loaded dataset: float32 inputs, normalised with training-pool statistics, and targets.

    x_train: [N, *input_shape]; x_test: [M, *input_shape]; x_extra_unlabeled: [E, *input_shape]
    (STL-10's unlabeled split) or None. Classification: y_train [N] and y_test [M] int64 class
    indices. Regression: y_train [N, K] and y_test [M, K] float32 (landmarks: x0, y0, x1, y1, ...
    in pixels of the input image, see datasets.landmarks).
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
    downloadable: whether load(..., download=True) can fetch missing files (if not, --download does not skip
    the check).
    """

    info: DatasetInfo
    load: Callable[[str | None, bool], DatasetTensors]
    check: Callable[[str | None, bool], None] = _no_files_needed
    downloadable: bool = True
