"""Weak augmentations that work on whole batches (on any device) with a shared generator.

Every worker augments the same global batch with the same generator state, so data-parallel
runs see exactly the augmentations a single worker would (see ``algorithms.parallel``).
Per dataset, as the papers specify: random translation by reflect-padding and cropping
(4 px CIFAR, 2 px SVHN, no flip for digits/SVHN), horizontal flip, Gaussian input noise for
vector data.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentSpec:
    """translate: max shift in pixels; flip: random horizontal flip; noise_std: Gaussian noise."""

    translate: int = 0
    flip: bool = False
    noise_std: float = 0.0


WEAK: dict[str, AugmentSpec] = {
    "two_circles": AugmentSpec(noise_std=0.05),
    "digits": AugmentSpec(translate=1),
    "fashion_mnist": AugmentSpec(translate=2, flip=True),
    "cifar10": AugmentSpec(translate=4, flip=True),
    "cifar100": AugmentSpec(translate=4, flip=True),
    "svhn": AugmentSpec(translate=2),
    "stl10": AugmentSpec(translate=12, flip=True),
}


def _draw(shape: tuple[int, ...], generator: torch.Generator, device: torch.device, kind: str, high: int = 0) -> torch.Tensor:
    # Draw on the generator's device, then move: the draw sequence is the same wherever the data lives.
    if kind == "int":
        t = torch.randint(0, high, shape, generator=generator, device=generator.device)
    elif kind == "uniform":
        t = torch.rand(shape, generator=generator, device=generator.device)
    else:
        t = torch.randn(shape, generator=generator, device=generator.device)
    return t.to(device)


def translate(x: torch.Tensor, pixels: int, generator: torch.Generator) -> torch.Tensor:
    """Shift each image by an independent (dy, dx) in [-pixels, pixels] (reflect padding). x [B, C, H, W]."""
    if pixels <= 0:
        return x
    b, c, h, w = x.shape
    k = min(pixels, h - 1, w - 1)
    padded = F.pad(x, (k, k, k, k), mode="reflect")
    dy = _draw((b,), generator, x.device, "int", 2 * k + 1)
    dx = _draw((b,), generator, x.device, "int", 2 * k + 1)
    rows = (torch.arange(h, device=x.device)[None, :] + dy[:, None])[:, None, :, None]
    cols = (torch.arange(w, device=x.device)[None, :] + dx[:, None])[:, None, None, :]
    bi = torch.arange(b, device=x.device)[:, None, None, None]
    ci = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[bi, ci, rows, cols]


def hflip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Flip each image horizontally with probability 1/2. x [B, C, H, W]."""
    flip = _draw((x.shape[0],), generator, x.device, "uniform") < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def make_augment(spec: AugmentSpec) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor]:
    """The batch augmentation ``(x [B, ...], generator) -> x' [B, ...]`` for ``spec``."""

    def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if x.dim() == 4:
            x = translate(x, spec.translate, generator)
            if spec.flip:
                x = hflip(x, generator)
        if spec.noise_std > 0:
            x = x + spec.noise_std * _draw(tuple(x.shape), generator, x.device, "normal")
        return x

    return augment


def weak_augment_for(dataset: str) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor]:
    """The weak augmentation of ``dataset`` (identity for datasets without an entry)."""
    return make_augment(WEAK.get(dataset, AugmentSpec()))


def cutout(x: torch.Tensor, fraction: float, generator: torch.Generator) -> torch.Tensor:
    """Zero one square of side ``fraction * min(H, W)`` at a random centre per image. x [B, C, H, W]."""
    b, _, h, w = x.shape
    side = max(1, int(round(fraction * min(h, w))))
    cy = _draw((b,), generator, x.device, "int", h)
    cx = _draw((b,), generator, x.device, "int", w)
    rows = torch.arange(h, device=x.device)[None, :]
    cols = torch.arange(w, device=x.device)[None, :]
    in_r = ((rows - cy[:, None]).abs() <= side // 2)[:, :, None]
    in_c = ((cols - cx[:, None]).abs() <= side // 2)[:, None, :]
    return x * (~(in_r & in_c))[:, None].to(x.dtype)


def strong_augment_for(dataset: str) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor]:
    """The strong augmentation of ``dataset``: its weak one, then Cutout (half the side) for
    images or 4x the noise for vectors (FixMatch's strong view; RandAugment comes with the
    baselines issue)."""
    spec = WEAK.get(dataset, AugmentSpec())
    weak = make_augment(spec)

    def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        x = weak(x, generator)
        if x.dim() == 4:
            return cutout(x, 0.5, generator)
        if spec.noise_std > 0:
            x = x + 3 * spec.noise_std * _draw(tuple(x.shape), generator, x.device, "normal")
        return x

    return augment
