"""Datasets, their tasks and metrics, and the scarce-label protocol of the benchmark (docs/datasets.md).

Note: this package is named `datasets` on purpose and shadows Hugging Face's `datasets` inside this repo.
"""
from .base import CLASSIFICATION, REGRESSION, TASKS, DatasetInfo, DatasetTensors, DatasetUnavailable, UnknownDataset
from .protocol import (VAL_PROTOCOLS, Split, SplitError, holdout_split, make_regression_split, make_split, resolve_n_val,
                       split_for, validate_request)
from .registry import check_available, get_info, list_datasets, load

__all__ = [
    "CLASSIFICATION",
    "REGRESSION",
    "TASKS",
    "DatasetInfo",
    "DatasetTensors",
    "DatasetUnavailable",
    "UnknownDataset",
    "list_datasets",
    "get_info",
    "check_available",
    "load",
    "Split",
    "SplitError",
    "VAL_PROTOCOLS",
    "resolve_n_val",
    "validate_request",
    "holdout_split",
    "make_split",
    "make_regression_split",
    "split_for",
]
