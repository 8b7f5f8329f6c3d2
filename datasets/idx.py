"""Reader for IDX files (the MNIST / Fashion-MNIST format), gzipped or not.

torchvision's read_image_file opens only uncompressed paths, and the Debian package ships .gz files;
parsing here avoids writing decompressed copies to disk.
"""
from __future__ import annotations

import gzip

import numpy as np
import torch

# IDX type byte -> big-endian numpy dtype (the format is big-endian).
_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class IdxFormatError(ValueError):
    """A file that is not a well-formed IDX file (one-line message naming the path)."""


def read_idx(path: str) -> torch.Tensor:
    """Read an IDX file (path ending .gz is decompressed) -> tensor of the stored shape, e.g. uint8 [N, 28, 28]."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise IdxFormatError(f"cannot read IDX file {path}: {e}") from e
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES:
        raise IdxFormatError(f"{path} is not an IDX file (bad magic number)")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_DTYPES[data[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != expected:
        raise IdxFormatError(f"{path}: header says shape {shape} but the file holds {len(data) - header} data bytes")
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return torch.from_numpy(arr.astype(dtype.newbyteorder("=")))  # native byte order, writable copy
