"""Landmark-aware weak augmentation: a random translation of each image, with its landmarks moved alike.

As the official L2I code's ``RandomTranslateWithReflect`` (001 App. A.1: "we crop an image from the original
image by moving the cropping window a random number of pixels"): per image an integer shift (dx, dy), each
uniform in {-k..k}; the content moves by (dx, dy) pixels (right and down for positive values), the pixels it
uncovers are filled by reflecting the image at its border (no edge repeat, as torch's ``reflect`` padding),
and every landmark (x, y) becomes (x + dx, y + dy). Pseudo-Label for regression predicts on the shifted view
and subtracts the shift (:func:`unshift_targets`) to get a pseudo-label of the original image.

Every draw comes from the supplied generator (on the generator's device, as :mod:`datasets.augment`), so
data-parallel workers holding the same generator state make the same shifts. Draw order: dx [B], then dy [B].
"""
from __future__ import annotations

import torch

from algorithms.host import host_values

from .landmarks import NUM_LANDMARKS

#: max shift in pixels per landmark dataset: 4 px at 60x60 as the official L2I AFLW code, the same fraction of
#: the image (3 px) at 48x48
MAX_SHIFT = {"aflw": 4, "synthetic_landmarks": 3}


def draw_shifts(batch: int, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Integer shifts [B, 2] (dx, dy), each uniform in {-max_shift..max_shift}, on the generator's device."""
    g_dev = generator.device
    dx = torch.randint(-max_shift, max_shift + 1, (batch,), generator=generator, device=g_dev)
    dy = torch.randint(-max_shift, max_shift + 1, (batch,), generator=generator, device=g_dev)
    return torch.stack([dx, dy], 1)


def _reflect(index: torch.Tensor, size: int) -> torch.Tensor:
    """Map indices in [-(size-1), 2(size-1)] into [0, size) by reflecting at the borders (no edge repeat)."""
    index = index.abs()
    return torch.where(index > size - 1, 2 * (size - 1) - index, index)


def shift_images(x: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Translate each image of x [B, C, H, W] by shifts [B, 2] (dx, dy) integer pixels, reflect-filled -> same shape.

    out[b, :, i, j] = x[b, :, reflect(i - dy_b), reflect(j - dx_b)]; needs |dx| < W and |dy| < H.
    """
    b, c, h, w = x.shape
    if shifts.shape != (b, 2):
        raise ValueError(f"shifts must be [{b}, 2], got {tuple(shifts.shape)}")
    if shifts.device.type == "cpu":  # drawn on the host generator: checked without a device read
        max_dx, max_dy = host_values(shifts.abs().amax(0)) if b else (0, 0)
        if max_dx >= w or max_dy >= h:
            raise ValueError(f"shifts must be smaller than the image ({h}x{w})")
    shifts = shifts.to(device=x.device, dtype=torch.long)
    rows = _reflect(torch.arange(h, device=x.device)[None, :] - shifts[:, 1:2], h)  # [B, H]
    cols = _reflect(torch.arange(w, device=x.device)[None, :] - shifts[:, 0:1], w)  # [B, W]
    flat = (rows[:, :, None] * w + cols[:, None, :]).reshape(b, 1, h * w).expand(b, c, h * w)
    return x.reshape(b, c, h * w).gather(2, flat).reshape(b, c, h, w)


def shift_targets(y: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Move landmark targets y [B, 2L] (x0, y0, x1, y1, ...) by shifts [B, 2] (dx, dy) -> [B, 2L]."""
    return y + shifts.to(device=y.device, dtype=y.dtype).repeat(1, y.shape[1] // 2)


def unshift_targets(y: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Undo :func:`shift_targets`: landmarks predicted on a shifted view -> landmarks of the original image."""
    return shift_targets(y, -shifts.to(y.device))


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator,
                 y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Shift each image of x [B, C, H, W] by a random (dx, dy) in {-max_shift..max_shift}^2, and its targets
    y [B, 2L] (if given) alike. Returns (x shifted, y shifted or None, shifts [B, 2] long on x's device), so a
    method can map predictions on the shifted view back with :func:`unshift_targets`."""
    k = min(max_shift, x.shape[2] - 1, x.shape[3] - 1)
    shifts = draw_shifts(x.shape[0], k, generator).to(x.device)
    return shift_images(x, shifts), (None if y is None else shift_targets(y, shifts)), shifts


def landmark_max_shift(dataset: str) -> int:
    """The weak augmentation's max shift in pixels for ``dataset`` (0, i.e. none, for datasets without an entry)."""
    return MAX_SHIFT.get(dataset, 0)


def equivariant_shift_for(dataset: str):
    """The weak augmentation of a landmark dataset as ``(x [B, C, H, W], generator) -> (x shifted, delta [B, 2L])``:
    :func:`random_shift` by up to :func:`landmark_max_shift` pixels, and the displacement of every target
    coordinate it causes (dx, dy, dx, dy, ...; the targets of the shifted image are y + delta, as
    :func:`shift_targets`). The form ``algorithms.task.RegressionTask`` takes."""
    k = landmark_max_shift(dataset)

    def augment(x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        shifted, _, shifts = random_shift(x, k, generator)
        return shifted, shifts.to(x.dtype).repeat(1, NUM_LANDMARKS)

    return augment
