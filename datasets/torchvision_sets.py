"""CIFAR-10/100, SVHN and STL-10 through torchvision, from files the user provides (or downloads)."""
from __future__ import annotations

import os

import numpy as np
import torch

from .base import DatasetInfo, DatasetTensors, DatasetUnavailable, Source
from .normalize import standardize_images_uint8

# Where torchvision downloads to when no --data-root is given (only used together with download=True,
# or found there by an earlier download).
DEFAULT_DATA_ROOT = os.path.join(os.path.expanduser("~"), ".cache", "meta-ssl-bench", "data")

_REMEDY = "pass --download on a machine with internet, or put the torchvision files there"

# Files torchvision reads, relative to data_root; checked for existence only (no loading).
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
    description="CIFAR-10 (torchvision): 50,000 train / 10,000 test 32x32 colour images, 10 classes",
)
CIFAR100_INFO = DatasetInfo(
    name="cifar100", num_classes=100, input_shape=(3, 32, 32), offline=False,
    train_class_counts=(500,) * 100, paper_n_val=5_000,
    description="CIFAR-100 (torchvision): 50,000 train / 10,000 test 32x32 colour images, 100 classes",
)
SVHN_INFO = DatasetInfo(
    name="svhn", num_classes=10, input_shape=(3, 32, 32), offline=False,
    train_class_counts=(4_948, 13_861, 10_585, 8_497, 7_458, 6_882, 5_727, 5_595, 5_045, 4_659),
    paper_n_val=1_000,
    description="SVHN (torchvision, split train/test; 'extra' unused): 73,257 train / 26,032 test 32x32 digits",
)
STL10_INFO = DatasetInfo(
    name="stl10", num_classes=10, input_shape=(3, 96, 96), offline=False,
    train_class_counts=(500,) * 10, paper_n_val=None,
    description="STL-10 (torchvision): 5,000 labeled train / 8,000 test 96x96 images + 100,000 unlabeled",
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


def _build(name: str, data_root: str | None, download: bool, make) -> DatasetTensors:
    """Check files, then run make(root) -> DatasetTensors, turning download failures into one-line errors."""
    _check(name, data_root, download)
    root = _root(data_root)
    try:
        return make(root)
    except (OSError, RuntimeError) as e:  # no internet, bad checksum, truncated file
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DatasetUnavailable(f"{name}: could not read or download the files under {root} ({first_line}); {_REMEDY}") from e


def _hwc(data: np.ndarray) -> torch.Tensor:
    """CIFAR's uint8 [N, H, W, C] -> uint8 [N, C, H, W]."""
    return torch.from_numpy(np.ascontiguousarray(data.transpose(0, 3, 1, 2)))


def _tensors(info, x_tr, y_tr, x_te, y_te, x_extra=None) -> DatasetTensors:
    x_tr, x_te, x_extra = standardize_images_uint8(x_tr, x_te, x_extra)
    return DatasetTensors(info, x_tr, torch.as_tensor(np.asarray(y_tr), dtype=torch.int64),
                          x_te, torch.as_tensor(np.asarray(y_te), dtype=torch.int64), x_extra)


def load_cifar10(data_root: str | None = None, download: bool = False) -> DatasetTensors:
    """CIFAR-10: x_train [50000, 3, 32, 32], x_test [10000, 3, 32, 32], labels int64 0..9."""
    def make(root):
        from torchvision.datasets import CIFAR10
        tr, te = CIFAR10(root, train=True, download=download), CIFAR10(root, train=False, download=download)
        return _tensors(CIFAR10_INFO, _hwc(tr.data), tr.targets, _hwc(te.data), te.targets)
    return _build("cifar10", data_root, download, make)


def load_cifar100(data_root: str | None = None, download: bool = False) -> DatasetTensors:
    """CIFAR-100: x_train [50000, 3, 32, 32], x_test [10000, 3, 32, 32], labels int64 0..99 (fine labels)."""
    def make(root):
        from torchvision.datasets import CIFAR100
        tr, te = CIFAR100(root, train=True, download=download), CIFAR100(root, train=False, download=download)
        return _tensors(CIFAR100_INFO, _hwc(tr.data), tr.targets, _hwc(te.data), te.targets)
    return _build("cifar100", data_root, download, make)


def load_svhn(data_root: str | None = None, download: bool = False) -> DatasetTensors:
    """SVHN: x_train [73257, 3, 32, 32], x_test [26032, 3, 32, 32], labels int64 0..9 (torchvision maps '10' to 0)."""
    def make(root):
        from torchvision.datasets import SVHN
        tr, te = SVHN(root, split="train", download=download), SVHN(root, split="test", download=download)
        return _tensors(SVHN_INFO, torch.from_numpy(tr.data), tr.labels, torch.from_numpy(te.data), te.labels)
    return _build("svhn", data_root, download, make)


def load_stl10(data_root: str | None = None, download: bool = False) -> DatasetTensors:
    """STL-10: x_train [5000, 3, 96, 96], x_test [8000, 3, 96, 96], x_extra_unlabeled [100000, 3, 96, 96].

    Normalised with the labeled train split's statistics. The unlabeled split alone is ~11 GB as float32.
    """
    def make(root):
        from torchvision.datasets import STL10
        tr = STL10(root, split="train", download=download)
        te = STL10(root, split="test", download=download)
        un = STL10(root, split="unlabeled", download=download)
        return _tensors(STL10_INFO, torch.from_numpy(tr.data), tr.labels, torch.from_numpy(te.data), te.labels,
                        torch.from_numpy(un.data))
    return _build("stl10", data_root, download, make)


def _checker(name):
    return lambda data_root, download: _check(name, data_root, download)


SOURCES = [
    Source(CIFAR10_INFO, load_cifar10, _checker("cifar10")),
    Source(CIFAR100_INFO, load_cifar100, _checker("cifar100")),
    Source(SVHN_INFO, load_svhn, _checker("svhn")),
    Source(STL10_INFO, load_stl10, _checker("stl10")),
]
