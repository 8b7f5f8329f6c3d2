"""digits: scikit-learn's bundled 8x8 handwritten digits (ships with sklearn, needs no files)."""
from __future__ import annotations

import functools

import numpy as np
import torch

from .base import DatasetInfo, DatasetTensors, Source

TEST_FRACTION = 0.2

DIGITS_INFO = DatasetInfo(
    name="digits",
    num_classes=10,
    input_shape=(1, 8, 8),
    offline=True,
    train_class_counts=(142, 146, 142, 146, 145, 145, 145, 143, 139, 144),
    paper_n_val=None,
    description="sklearn load_digits: 1,797 8x8 images, 10 classes; fixed stratified 20% test split (RandomState 0)",
)


@functools.lru_cache(maxsize=1)
def _load_digits() -> DatasetTensors:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = d.images.astype(np.float32) / 16.0  # pixels are 0..16
    y = d.target.astype(np.int64)
    idx_train, idx_test = train_test_split(
        np.arange(len(y)), test_size=TEST_FRACTION, stratify=y, random_state=np.random.RandomState(0)
    )
    # Keep the pool in the original order so split indices mean the same thing across sklearn versions
    # that return the same partition.
    idx_train, idx_test = np.sort(idx_train), np.sort(idx_test)
    # One scalar mean/std (a single grey channel), from the training pool only.
    mean, std = x[idx_train].mean(), x[idx_train].std()
    x = (x - mean) / std
    return DatasetTensors(
        info=DIGITS_INFO,
        x_train=torch.from_numpy(x[idx_train]).unsqueeze(1),
        y_train=torch.from_numpy(y[idx_train]),
        x_test=torch.from_numpy(x[idx_test]).unsqueeze(1),
        y_test=torch.from_numpy(y[idx_test]),
    )


def load_digits(data_root: str | None = None, download: bool = False) -> DatasetTensors:
    """digits: x_train [1437, 1, 8, 8], y_train [1437], x_test [360, 1, 8, 8], y_test [360] (cached)."""
    return _load_digits()


SOURCES = [Source(DIGITS_INFO, load_digits)]
