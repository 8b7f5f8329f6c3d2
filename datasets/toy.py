"""two_circles: the 2-D toy of the L2I paper (Sec. 4.1), generated in-process."""
from __future__ import annotations

import functools

import numpy as np
import torch

from .base import DatasetInfo, DatasetTensors, Source

N_SAMPLES = 10_000
N_TEST_PER_CLASS = 1_250  # 2,500 fixed test points, class-balanced; the other 7,500 are the training pool

TWO_CIRCLES_INFO = DatasetInfo(
    name="two_circles",
    num_classes=2,
    input_shape=(2,),
    offline=True,
    train_class_counts=(3_750, 3_750),
    paper_n_val=1_000,
    description="sklearn make_circles(10000, noise=0.1, factor=0.5, random_state=0); 7,500 train / 2,500 test (L2I Sec. 4.1)",
)


def two_circles_test_indices(y: np.ndarray) -> np.ndarray:
    """Sorted int64 indices of the fixed test points: 1,250 per class, drawn with a fixed generator (seed 0)."""
    rng = np.random.default_rng(0)
    picks = [rng.permutation(np.flatnonzero(y == c))[:N_TEST_PER_CLASS] for c in (0, 1)]
    return np.sort(np.concatenate(picks)).astype(np.int64)


@functools.lru_cache(maxsize=1)
def _load_two_circles() -> DatasetTensors:
    from sklearn.datasets import make_circles  # imported here: sklearn import costs ~1 s

    x, y = make_circles(n_samples=N_SAMPLES, noise=0.1, factor=0.5, random_state=0)
    test = np.zeros(len(y), dtype=bool)
    test[two_circles_test_indices(y)] = True
    # The points are already centred with unit-order scale, so no normalisation beyond float32.
    return DatasetTensors(
        info=TWO_CIRCLES_INFO,
        x_train=torch.from_numpy(x[~test]).float(),
        y_train=torch.from_numpy(y[~test]).long(),
        x_test=torch.from_numpy(x[test]).float(),
        y_test=torch.from_numpy(y[test]).long(),
    )


def load_two_circles(data_root: str | None = None, download: bool = False) -> DatasetTensors:
    """two_circles: x_train [7500, 2], y_train [7500], x_test [2500, 2], y_test [2500] (cached)."""
    return _load_two_circles()


SOURCES = [Source(TWO_CIRCLES_INFO, load_two_circles)]
