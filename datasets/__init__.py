"""Datasets and the scarce-label protocol of the benchmark (DESIGN.md Sec. 3).

Note: this package is named `datasets` on purpose and shadows Hugging Face's `datasets` inside this repo.
"""
from .base import DatasetInfo, DatasetTensors, DatasetUnavailable, UnknownDataset
from .protocol import VAL_PROTOCOLS, Split, SplitError, holdout_split, make_split, resolve_n_val, validate_request
from .registry import check_available, get_info, list_datasets, load

__all__ = [
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
]
