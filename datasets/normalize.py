"""Per-channel standardisation with statistics of the training pool only (the test set must not leak in)."""
from __future__ import annotations

import torch

_CHUNK = 4096  # samples per chunk: keeps the float64 accumulation small for 100k-image sets


def channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std per channel of images x [N, C, H, W] (any dtype) -> two float32 tensors [C].

    Accumulates sums in float64 chunk by chunk, so uint8 sets of any size need no full float copy.
    """
    c = x.shape[1]
    s = torch.zeros(c, dtype=torch.float64)
    sq = torch.zeros(c, dtype=torch.float64)
    for i in range(0, x.shape[0], _CHUNK):
        chunk = x[i : i + _CHUNK].to(torch.float64)
        s += chunk.sum(dim=(0, 2, 3))
        sq += chunk.pow(2).sum(dim=(0, 2, 3))
    n = x.shape[0] * x.shape[2] * x.shape[3]
    mean = s / n
    std = (sq / n - mean.pow(2)).clamp_min(0).sqrt()
    return mean.float(), std.clamp_min(1e-8).float()


def standardize_uint8(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 images [N, C, H, W] in 0..255 -> float32 [N, C, H, W] = (x / 255 - mean) / std.

    mean/std [C] are in the [0, 1] scale. Works in place on the float copy, so peak memory is one float tensor.
    """
    out = x.to(torch.float32)
    out.div_(255.0)
    out.sub_(mean.view(1, -1, 1, 1)).div_(std.view(1, -1, 1, 1))
    return out


def standardize_images_uint8(
    x_train: torch.Tensor, *others: torch.Tensor | None
) -> tuple[torch.Tensor | None, ...]:
    """Standardise uint8 [N, C, H, W] sets with x_train's per-channel stats -> float32 tensors, same order.

    None entries pass through (e.g. a dataset without an extra unlabeled split).
    """
    mean, std = channel_stats(x_train)
    mean, std = mean / 255.0, std / 255.0
    return tuple(None if t is None else standardize_uint8(t, mean, std) for t in (x_train, *others))
