"""CIFAR-10/100, SVHN and STL-10 from their published files under --data-root (torchvision's layout).

The files are parsed directly (datasets.image_formats), so any file in the real format loads, a test fixture
included; torchvision only downloads them (``--download``, checking the archives' md5) when files are missing.
"""
from __future__ import annotations

import os

import numpy as np
import torch

from .base import DatasetInfo, DatasetTensors, DatasetUnavailable, Source
from .image_formats import FormatError, read_cifar_batches, read_stl10_images, read_stl10_labels, read_svhn_mat
from .normalize import standardize_images_uint8

# Where torchvision downloads to when no --data-root is given (only used together with download=True,
# or found there by an earlier download).
DEFAULT_DATA_ROOT = os.path.join(os.path.expanduser("~"), ".cache", "meta-ssl-bench", "data")

_REMEDY = "pass --download on a machine with internet, or put the published files there (see docs/datasets.md)"

# The published files, relative to data_root (torchvision's layout); checked for existence before Ray starts.
_EXPECTED = {
    "cifar10": [os.path.join("cifar-10-batches-py", f) for f in
                ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch")],
    "cifar100": [os.path.join("cifar-100-python", f) for f in ("train", "test")],
    "svhn": ["train_32x32.mat", "test_32x32.mat"],
    "stl10": [os.path.join("stl10_binary", f) for f in
              ("train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin", "unlabeled_X.bin")],
}

CIFAR10_INFO = DatasetInfo(
    name="cifar10", num_classes=10, input_shape=(3, 32, 32), offline=False,
    train_class_counts=(5_000,) * 10, paper_n_val=5_000,
    description="CIFAR-10 (python batches): 50,000 train / 10,000 test 32x32 colour images, 10 classes",
)
CIFAR100_INFO = DatasetInfo(
    name="cifar100", num_classes=100, input_shape=(3, 32, 32), offline=False,
    train_class_counts=(500,) * 100, paper_n_val=5_000,
    description="CIFAR-100 (python batches): 50,000 train / 10,000 test 32x32 colour images, 100 classes",
)
SVHN_INFO = DatasetInfo(
    name="svhn", num_classes=10, input_shape=(3, 32, 32), offline=False,
    train_class_counts=(4_948, 13_861, 10_585, 8_497, 7_458, 6_882, 5_727, 5_595, 5_045, 4_659),
    paper_n_val=1_000,
    description="SVHN (.mat files, split train/test; 'extra' unused): 73,257 train / 26,032 test 32x32 digits",
)
STL10_INFO = DatasetInfo(
    name="stl10", num_classes=10, input_shape=(3, 96, 96), offline=False,
    train_class_counts=(500,) * 10, paper_n_val=None,
    description="STL-10 (binary files): 5,000 labeled train / 8,000 test 96x96 images + 100,000 unlabeled",
)


def _root(data_root: str | None) -> str:
    return os.path.abspath(os.path.expanduser(data_root)) if data_root else DEFAULT_DATA_ROOT


def _check(name: str, data_root: str | None, download: bool) -> None:
    """Raise DatasetUnavailable naming the first expected file missing under data_root (no-op if download)."""
    if download:
        return
    root = _root(data_root)
    # Name the outermost missing thing (the root, then torchvision's folder, then a file): the likeliest fix.
    candidates = [root] + sorted({os.path.join(root, r.split(os.sep)[0]) for r in _EXPECTED[name]})
    candidates += [os.path.join(root, r) for r in _EXPECTED[name]]
    for path in candidates:
        if not os.path.exists(path):
            raise DatasetUnavailable(f"{name}: {path} not found; {_REMEDY}")


def _build(name: str, data_root: str | None, download: bool, fetch, read) -> DatasetTensors:
    """Read the files with read(root) -> DatasetTensors; if download and any file is missing, first fetch(root)
    (torchvision's downloader, which checks the archive's md5). Failures become one-line DatasetUnavailable."""
    root = _root(data_root)
    try:
        if download and any(not os.path.isfile(os.path.join(root, r)) for r in _EXPECTED[name]):
            fetch(root)
        _check(name, data_root, False)
        return read(root)
    except DatasetUnavailable:
        raise
    except FormatError as e:
        raise DatasetUnavailable(f"{name}: {e}; {_REMEDY}") from e
    except (OSError, RuntimeError) as e:  # no internet, bad checksum of a download
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DatasetUnavailable(f"{name}: could not download into {root} ({first_line}); {_REMEDY}") from e


def _tensors(info, x_tr, y_tr, x_te, y_te, x_extra=None) -> DatasetTensors:
    """uint8 [N, C, H, W] images and labels -> standardised DatasetTensors (training-pool statistics)."""
    x_tr, x_te, x_extra = standardize_images_uint8(x_tr, x_te, x_extra)
    return DatasetTensors(info, x_tr, torch.as_tensor(np.asarray(y_tr), dtype=torch.int64),
                          x_te, torch.as_tensor(np.asarray(y_te), dtype=torch.int64), x_extra)


def _paths(root: str, name: str) -> list[str]:
    return [os.path.join(root, r) for r in _EXPECTED[name]]


def load_cifar10(data_root: str | None = None, download: bool = False) -> DatasetTensors:
    """CIFAR-10 from cifar-10-batches-py/: x_train [50000, 3, 32, 32], x_test [10000, 3, 32, 32], labels int64 0..9."""
    def fetch(root):
        from torchvision.datasets import CIFAR10
        CIFAR10(root, train=True, download=True)

    def read(root):
        paths = _paths(root, "cifar10")
        x_tr, y_tr = read_cifar_batches(paths[:5], "labels")
        x_te, y_te = read_cifar_batches(paths[5:], "labels")
        return _tensors(CIFAR10_INFO, x_tr, y_tr, x_te, y_te)
    return _build("cifar10", data_root, download, fetch, read)


def load_cifar100(data_root: str | None = None, download: bool = False) -> DatasetTensors:
    """CIFAR-100 from cifar-100-python/: x_train [50000, 3, 32, 32], x_test [10000, 3, 32, 32], fine labels 0..99."""
    def fetch(root):
        from torchvision.datasets import CIFAR100
        CIFAR100(root, train=True, download=True)

    def read(root):
        train, test = _paths(root, "cifar100")
        x_tr, y_tr = read_cifar_batches([train], "fine_labels")
        x_te, y_te = read_cifar_batches([test], "fine_labels")
        return _tensors(CIFAR100_INFO, x_tr, y_tr, x_te, y_te)
    return _build("cifar100", data_root, download, fetch, read)


def load_svhn(data_root: str | None = None, download: bool = False) -> DatasetTensors:
    """SVHN from train_32x32.mat / test_32x32.mat: x_train [73257, 3, 32, 32], x_test [26032, 3, 32, 32],
    labels int64 0..9 (the files' '10' is the digit 0, as torchvision maps it)."""
    def fetch(root):
        from torchvision.datasets import SVHN
        for split in ("train", "test"):
            if not os.path.isfile(os.path.join(root, f"{split}_32x32.mat")):
                SVHN(root, split=split, download=True)

    def read(root):
        train, test = _paths(root, "svhn")
        return _tensors(SVHN_INFO, *read_svhn_mat(train), *read_svhn_mat(test))
    return _build("svhn", data_root, download, fetch, read)


def load_stl10(data_root: str | None = None, download: bool = False) -> DatasetTensors:
    """STL-10 from stl10_binary/: x_train [5000, 3, 96, 96], x_test [8000, 3, 96, 96], x_extra_unlabeled
    [100000, 3, 96, 96], labels int64 0..9.

    Normalised with the labeled train split's statistics. The unlabeled split alone is ~11 GB as float32.
    """
    def fetch(root):
        from torchvision.datasets import STL10
        STL10(root, split="train", download=True)

    def read(root):
        tr_x, tr_y, te_x, te_y, un_x = _paths(root, "stl10")
        x_tr, y_tr, x_te, y_te = read_stl10_images(tr_x), read_stl10_labels(tr_y), read_stl10_images(te_x), read_stl10_labels(te_y)
        for x, y, p in ((x_tr, y_tr, tr_x), (x_te, y_te, te_x)):
            if len(x) != len(y):
                raise FormatError(f"{p}: {len(x)} images but {len(y)} labels")
        return _tensors(STL10_INFO, x_tr, y_tr, x_te, y_te, read_stl10_images(un_x))
    return _build("stl10", data_root, download, fetch, read)


def _checker(name):
    return lambda data_root, download: _check(name, data_root, download)


SOURCES = [
    Source(CIFAR10_INFO, load_cifar10, _checker("cifar10")),
    Source(CIFAR100_INFO, load_cifar100, _checker("cifar100")),
    Source(SVHN_INFO, load_svhn, _checker("svhn")),
    Source(STL10_INFO, load_stl10, _checker("stl10")),
]
