"""The task of a run (classification or regression) from its dataset, and evaluation by that task.

Classification runs get :class:`~algorithms.task.ClassificationTask`. Regression runs (the landmark sets)
get a :class:`~algorithms.task.RegressionTask` with

* the standardisation of the targets: per-coordinate mean and std of the *labeled training set* (the
  official L2I code's ``stat_labeled_set``; it computes them on randomly shifted crops, here on the
  un-augmented targets): labeled data only, so validation and test never shape training;
* the weak augmentation that moves the targets: the random shift of :mod:`datasets.landmark_augment`;
* the metric: the normalised mean error over the inter-ocular distance (:mod:`datasets.landmarks`), stored
  as a fraction of the distance (x 100 = the papers' %), like classification errors are fractions.
"""
from __future__ import annotations

import torch

from algorithms.task import ClassificationTask, RegressionTask, Task, standardisation
from datasets import REGRESSION, DatasetInfo
from datasets.landmark_augment import equivariant_shift_for
from datasets.landmarks import nme_per_sample


def nme_fraction(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image normalised mean error as a fraction of the inter-ocular distance: [b, 2L], [b, 2L] -> [b]."""
    return nme_per_sample(pred, target) / 100.0


def task_for(info: DatasetInfo, y_labeled: torch.Tensor) -> Task:
    """The task of a run on ``info``'s dataset; ``y_labeled`` [n, K]: the labeled training targets (regression)."""
    if info.task != REGRESSION:
        return ClassificationTask()
    mean, std = standardisation(y_labeled)
    return RegressionTask(mean.to(y_labeled.device), std.to(y_labeled.device), equivariant_shift_for(info.name),
                          nme_fraction)
