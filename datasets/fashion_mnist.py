"""Fashion-MNIST from IDX files: --data-root first, then the Debian package dataset-fashion-mnist."""
from __future__ import annotations

import functools
import os

import torch

from .base import DatasetInfo, DatasetTensors, DatasetUnavailable, Source
from .idx import IdxFormatError, read_idx
from .normalize import standardize_images_uint8

# Where Debian's dataset-fashion-mnist puts the gzipped IDX files (module attribute so tests can redirect it).
DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

_REMEDY = ("install the Debian package dataset-fashion-mnist or pass --data-root DIR holding the IDX files "
           "(or --download on a machine with internet)")

FASHION_MNIST_INFO = DatasetInfo(
    name="fashion_mnist",
    num_classes=10,
    input_shape=(1, 28, 28),
    offline=False,
    train_class_counts=(6_000,) * 10,
    paper_n_val=None,
    description="Fashion-MNIST: 60,000 train / 10,000 test 28x28 grey images, 10 classes (IDX files)",
)


def candidate_dirs(data_root: str | None) -> list[str]:
    """Folders searched in order: data_root, data_root/FashionMNIST/raw (torchvision's layout), DEBIAN_DIR."""
    dirs = []
    if data_root:
        root = os.path.abspath(os.path.expanduser(data_root))
        dirs += [root, os.path.join(root, "FashionMNIST", "raw")]
    return dirs + [DEBIAN_DIR]


def _find_in(folder: str) -> tuple[str, ...] | None:
    """Paths of the four IDX files in folder (plain preferred over .gz), or None if any is missing."""
    found = []
    for name in FILES:
        for path in (os.path.join(folder, name), os.path.join(folder, name + ".gz")):
            if os.path.isfile(path):
                found.append(path)
                break
        else:
            return None
    return tuple(found)


def find_files(data_root: str | None, download: bool = False) -> tuple[str, ...]:
    """The four IDX file paths (train images, train labels, test images, test labels) from the first folder that
    has all four; with download=True and none found, torchvision downloads into data_root/FashionMNIST/raw."""
    dirs = candidate_dirs(data_root)
    for folder in dirs:
        files = _find_in(folder)
        if files is not None:
            return files
    if download:
        return _download(data_root)
    raise DatasetUnavailable(f"fashion_mnist: IDX files not found in {', '.join(dirs)}; {_REMEDY}")


def _download(data_root: str | None) -> tuple[str, ...]:
    from torchvision.datasets import FashionMNIST

    from .torchvision_sets import DEFAULT_DATA_ROOT

    root = os.path.abspath(os.path.expanduser(data_root)) if data_root else DEFAULT_DATA_ROOT
    try:
        FashionMNIST(root, train=True, download=True)  # also fetches the test files
    except (OSError, RuntimeError) as e:
        raise DatasetUnavailable(f"fashion_mnist: download into {root} failed ({type(e).__name__}); {_REMEDY}") from e
    files = _find_in(os.path.join(root, "FashionMNIST", "raw"))
    if files is None:
        raise DatasetUnavailable(f"fashion_mnist: download into {root} left no IDX files; {_REMEDY}")
    return files


def check_fashion_mnist(data_root: str | None = None, download: bool = False) -> None:
    """Raise DatasetUnavailable (listing the folders searched) unless all four IDX files are found."""
    if not download:
        find_files(data_root)


@functools.lru_cache(maxsize=4)
def _load_files(files: tuple[str, ...], stamps: tuple[tuple[int, int], ...]) -> DatasetTensors:
    # stamps (mtime, size) are part of the cache key so a rewritten file is re-read.
    try:
        x_tr, y_tr, x_te, y_te = (read_idx(p) for p in files)
    except IdxFormatError as e:
        raise DatasetUnavailable(f"fashion_mnist: {e}; {_REMEDY}") from e
    for x, y, p in ((x_tr, y_tr, files[0]), (x_te, y_te, files[2])):
        if x.dim() != 3 or tuple(x.shape[1:]) != (28, 28) or x.dtype != torch.uint8 or y.dim() != 1 or len(x) != len(y):
            raise DatasetUnavailable(f"fashion_mnist: {p} is not a uint8 [N, 28, 28] image file matching its labels")
    x_tr, x_te = standardize_images_uint8(x_tr.unsqueeze(1), x_te.unsqueeze(1))
    return DatasetTensors(FASHION_MNIST_INFO, x_tr, y_tr.long(), x_te, y_te.long())


def load_fashion_mnist(data_root: str | None = None, download: bool = False) -> DatasetTensors:
    """Fashion-MNIST: x_train [60000, 1, 28, 28], x_test [10000, 1, 28, 28] standardised; labels int64 0..9."""
    files = find_files(data_root, download)
    stamps = tuple((os.stat(p).st_mtime_ns, os.stat(p).st_size) for p in files)
    return _load_files(files, stamps)


SOURCES = [Source(FASHION_MNIST_INFO, load_fashion_mnist, check_fashion_mnist)]
