"""Readers for the on-disk formats of CIFAR-10/100 (python pickles), SVHN (MATLAB .mat) and STL-10 (raw binary).

torchvision's dataset classes verify each file's md5 before reading it, so they refuse anything but the
published files (a small test fixture in the very same format included). These readers parse the formats
directly, with the same results as torchvision on the real files; torchvision is used only to download.

CIFAR: each batch is a pickled dict with 'data' uint8 [N, 3072] (1024 red, 1024 green, 1024 blue values, each
32x32 row-major) and 'labels' (CIFAR-10) or 'fine_labels' (CIFAR-100). The pickles were written by Python 2,
so they are read with latin-1 strings, and only numpy's array reconstruction may run while unpickling.
SVHN: 'X' uint8 [32, 32, 3, N] and 'y' [N, 1] with labels 1..10, where 10 is the digit 0.
STL-10: *_X.bin holds uint8 images of 3 x 96 x 96, each channel stored column-major; *_y.bin uint8 labels 1..10.
"""
from __future__ import annotations

import os
import pickle

import numpy as np
import torch


class FormatError(ValueError):
    """A file that does not hold what its format promises (one-line message naming the path)."""


# What unpickling a CIFAR batch may construct: numpy arrays and dtypes (module names of numpy 1.x and 2.x), and
# bytes (protocol-2 pickles written by Python 3 rebuild bytes with _codecs.encode).
_ALLOWED = {(m, n) for m in ("numpy.core.multiarray", "numpy._core.multiarray") for n in ("_reconstruct", "scalar")}
_ALLOWED |= {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _unpickle(path: str) -> dict:
    try:
        with open(path, "rb") as f:
            obj = _ArrayUnpickler(f, encoding="latin1").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError) as e:
        raise FormatError(f"{path} is not a CIFAR python batch ({type(e).__name__}: {e})") from e
    if not isinstance(obj, dict):
        raise FormatError(f"{path} is not a CIFAR python batch (holds a {type(obj).__name__}, not a dict)")
    return obj


def read_cifar_batches(paths: list[str], label_key: str) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR python batches -> uint8 images [N, 3, 32, 32] and int64 labels [N], in file order.

    label_key: 'labels' (CIFAR-10) or 'fine_labels' (CIFAR-100)."""
    xs, ys = [], []
    for path in paths:
        batch = _unpickle(path)
        if "data" not in batch or label_key not in batch:
            raise FormatError(f"{path} has no 'data' and {label_key!r} entries (keys: {', '.join(map(str, batch))})")
        data = np.asarray(batch["data"], dtype=np.uint8)
        labels = np.asarray(batch[label_key], dtype=np.int64)
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
            raise FormatError(f"{path}: 'data' of shape {data.shape} does not match {len(labels)} labels of 3x32x32 images")
        xs.append(data.reshape(-1, 3, 32, 32))
        ys.append(labels)
    return torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys))


def read_svhn_mat(path: str) -> tuple[torch.Tensor, torch.Tensor]:
    """An SVHN *_32x32.mat file -> uint8 images [N, 3, 32, 32] and int64 labels [N] in 0..9 (label 10 -> 0)."""
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    try:
        mat = loadmat(path)
        x, y = np.asarray(mat["X"]), np.asarray(mat["y"]).reshape(-1).astype(np.int64)
    except (OSError, ValueError, KeyError, NotImplementedError, MatReadError) as e:
        raise FormatError(f"{path} is not an SVHN .mat file with 'X' and 'y' ({type(e).__name__})") from e
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.shape[3] != len(y):
        raise FormatError(f"{path}: 'X' of shape {x.shape} is not [32, 32, 3, N] for {len(y)} labels")
    return torch.from_numpy(np.ascontiguousarray(x.transpose(3, 2, 0, 1), dtype=np.uint8)), torch.from_numpy(y % 10)


STL10_SHAPE = (3, 96, 96)


def read_stl10_images(path: str) -> torch.Tensor:
    """An STL-10 *_X.bin file -> uint8 images [N, 3, 96, 96] (rows and columns un-transposed)."""
    size = int(np.prod(STL10_SHAPE))
    try:
        nbytes = os.path.getsize(path)
    except OSError as e:
        raise FormatError(f"cannot read STL-10 image file {path} ({type(e).__name__})") from e
    if nbytes % size:
        raise FormatError(f"{path}: {nbytes} bytes is not a whole number of 3x96x96 images")
    data = np.fromfile(path, dtype=np.uint8).reshape(-1, *STL10_SHAPE)
    return torch.from_numpy(np.ascontiguousarray(data.transpose(0, 1, 3, 2)))


def read_stl10_labels(path: str) -> torch.Tensor:
    """An STL-10 *_y.bin file -> int64 labels [N] in 0..9 (stored as 1..10)."""
    try:
        y = np.fromfile(path, dtype=np.uint8).astype(np.int64)
    except OSError as e:
        raise FormatError(f"cannot read STL-10 label file {path} ({type(e).__name__})") from e
    if y.size and (y.min() < 1 or y.max() > 10):
        raise FormatError(f"{path}: labels must lie in 1..10, found {y.min()}..{y.max()}")
    return torch.from_numpy(y - 1)
