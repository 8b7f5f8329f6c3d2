"""The registry of dataset sources: look up static info, check for files, load tensors by name."""
from __future__ import annotations

from . import aflw, fashion_mnist, sklearn_sets, synthetic_landmarks, torchvision_sets, toy
from .base import DatasetInfo, DatasetTensors, Source, UnknownDataset

_SOURCES: dict[str, Source] = {
    s.info.name: s
    for module in (toy, sklearn_sets, fashion_mnist, torchvision_sets, synthetic_landmarks, aflw)
    for s in module.SOURCES
}


def list_datasets() -> list[str]:
    """Names of all registered datasets, sorted."""
    return sorted(_SOURCES)


def _source(name: str) -> Source:
    try:
        return _SOURCES[name]
    except KeyError:
        raise UnknownDataset(f"unknown dataset {name!r}; valid names: {', '.join(list_datasets())}") from None


def get_info(name: str) -> DatasetInfo:
    """Static info of a dataset (no loading). Raises UnknownDataset (a ValueError) listing valid names."""
    return _source(name).info


def check_available(name: str, data_root: str | None = None, download: bool = False) -> None:
    """Raise DatasetUnavailable if the dataset's files are missing (existence checks only, no loading).

    No-op for offline datasets, and when download=True for datasets that can be downloaded.
    """
    source = _source(name)
    if source.info.offline or (download and source.downloadable):
        return
    source.check(data_root, download)


def load(name: str, data_root: str | None = None, download: bool = False) -> DatasetTensors:
    """Load a dataset: float32 x_* [N, *input_shape] standardised with training-pool stats; y_* int64 [N]
    (classification) or float32 [N, K] (regression, see DatasetTensors).

    Offline, Fashion-MNIST and AFLW loads are cached in-process: treat the returned tensors as read-only.
    """
    return _source(name).load(data_root, download)
