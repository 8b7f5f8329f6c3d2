"""Weak and strong (FixMatch RandAugment + Cutout) augmentations of whole batches, built on
``torchvision.transforms.v2.functional``, with every random choice drawn from a supplied generator.

Every worker augments the same global batch with the same generator state, so data-parallel
runs see exactly the augmentations a single worker would (see ``algorithms.parallel``). That is
why nothing here uses torchvision's transform *classes* (they draw from the global torch RNG):
all per-sample parameters come from ``generator`` (drawn on the generator's device, so the draw
sequence is the same wherever the data lives), and only the deterministic ``v2.functional`` ops
are called.

Weak, per dataset as the papers specify (reflect padding as FixMatch's ``augment_shift``):
  cifar10/100: 4 px translation + horizontal flip; stl10: 12 px at 96x96 + flip (FixMatch's
  ``ms(12)``); svhn: 2 px translation, no flip (the issue's choice; FixMatch's code uses 4 px);
  fashion_mnist: 2 px + flip; digits: 1 px, no flip (digits are not mirror-symmetric);
  two_circles (vectors [B, 2]): Gaussian noise, std 0.05.

Strong, images: the weak augmentation, then FixMatch's RandAugment (google-research/fixmatch
``AugmentPoolRAMC``: two ops drawn uniformly with replacement from the 14 below, each applied with
probability 1/2 at a level drawn uniformly from {1..9}/10, independently per sample), then Cutout
(a square of side half the image, centred uniformly on the image and clipped at its border,
filled with mid-gray 0.5). Ops, on pixels in [0, 1] (un-normalised with the dataset's training
statistics, re-normalised after), with level l and a random sign s = +-1 where marked:

  Identity, AutoContrast, Equalize;  Rotate 30*l*s degrees;  Solarize threshold 1 - l;
  Color / Contrast / Brightness / Sharpness factor 0.1 + 1.8*l (FixMatch's ``_enhancer_impl``);
  ShearX / ShearY atan(0.3*l*s) about the top-left corner (as PIL and torchvision's RandAugment);
  TranslateX / TranslateY round(0.3*l*size)*s pixels;  Posterize 4 + int(4*l) bits (the paper's
  range [4, 8] and torchvision's; FixMatch's released code keeps only 1..4 bits).

Geometric ops use nearest-neighbour sampling and fill with gray 0.5, which is what FixMatch's PIL
path produces (pixels outside the image come back as 0 in its [-1, 1] scale). On 1-channel images
Color is the identity (no saturation to change), as PIL's Color on a gray image; all other ops
work on 8x8 digits. Strong, vectors: the weak noise plus noise of 3x its std.

Landmark (regression) sets have no entry here, so both functions return the identity for them:
their augmentation must move the targets too (:mod:`datasets.landmark_augment`).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from algorithms.host import host_values

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


@dataclass(frozen=True)
class AugmentSpec:
    """translate: max shift in pixels (reflect padding); flip: random horizontal flip; noise_std:
    Gaussian noise on the (normalised) input; mean/std: per-channel statistics in the [0, 1] pixel
    scale that ``datasets.normalize`` standardised the images with (strong augmentation only)."""

    translate: int = 0
    flip: bool = False
    noise_std: float = 0.0
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()


# Training-split channel statistics (population std over all pixels, as normalize.channel_stats).
# digits: computed from sklearn's digits / 16 on the fixed training pool (tests check it exactly);
# the others are the widely published training-split values (CIFAR's are the ones in FixMatch's
# auto_augment code); a small mismatch only shifts the pixels RandAugment sees by a few 1e-3.
WEAK: dict[str, AugmentSpec] = {
    "two_circles": AugmentSpec(noise_std=0.05),
    "digits": AugmentSpec(translate=1, mean=(0.3053833842277527,), std=(0.3761191666126251,)),
    "fashion_mnist": AugmentSpec(translate=2, flip=True, mean=(0.2860405969887955,), std=(0.3530242445149223,)),
    "cifar10": AugmentSpec(translate=4, flip=True, mean=(0.49139968, 0.48215841, 0.44653091),
                           std=(0.24703223, 0.24348513, 0.26158784)),
    "cifar100": AugmentSpec(translate=4, flip=True, mean=(0.50707516, 0.48654887, 0.44091784),
                            std=(0.26733429, 0.25643846, 0.27615047)),
    "svhn": AugmentSpec(translate=2, mean=(0.4376821, 0.4437697, 0.47280442),
                        std=(0.19803012, 0.20101562, 0.19703614)),
    "stl10": AugmentSpec(translate=12, flip=True, mean=(0.44671097, 0.4398105, 0.4066468),
                         std=(0.2603405, 0.25657743, 0.27126738)),
}

#: FixMatch's RandAugment pool (google-research/fixmatch ``RANDOM_POLICY_OPS``), in a fixed order:
#: the op index drawn from the generator refers to this tuple.
RA_OPS: tuple[str, ...] = (
    "Identity", "AutoContrast", "Equalize", "Rotate", "Solarize", "Color", "Contrast", "Brightness",
    "Sharpness", "ShearX", "TranslateX", "TranslateY", "Posterize", "ShearY",
)
GRAY = 0.5  # fill of Cutout and of pixels geometric ops bring in, in the [0, 1] pixel scale
CUTOUT_FRACTION = 0.5  # Cutout side / image side (FixMatch: 16 px at 32x32)
_NEAREST = InterpolationMode.NEAREST


def _draw(shape: tuple[int, ...], generator: torch.Generator, kind: str, high: int = 0) -> torch.Tensor:
    # Always on the generator's device: the draw sequence is the same wherever the data lives.
    if kind == "int":
        return torch.randint(0, high, shape, generator=generator, device=generator.device)
    if kind == "uniform":
        return torch.rand(shape, generator=generator, device=generator.device)
    return torch.randn(shape, generator=generator, device=generator.device)


def translate_flip(x: torch.Tensor, pixels: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Reflect-pad by ``pixels`` and crop back at an independent random offset per image, then
    (if ``flip``) mirror each image horizontally with probability 1/2. x [B, C, H, W] -> same.

    Image i is ``padded[i, :, dy:dy+H, dx:dx+W]`` with dy, dx uniform in {0..2k}, k = min(pixels, H-1, W-1)
    (reflect padding needs k < size). Draws: dy [B], dx [B] (if k > 0), then flip coins [B] (if flip).
    Crop and mirror are one gather from the padded batch (row dy + r, column dx + c, or dx + W-1-c
    for a mirrored image): no per-image copies.
    """
    b, c, h, w = x.shape
    k = min(pixels, h - 1, w - 1)
    if k <= 0 and not flip:
        return x
    dev = x.device
    rows = torch.arange(h, device=dev).expand(b, h)
    cols = torch.arange(w, device=dev).expand(b, w)
    src = x
    if k > 0:
        dy = _draw((b,), generator, "int", 2 * k + 1).to(dev)
        dx = _draw((b,), generator, "int", 2 * k + 1).to(dev)
        src = TF.pad(x, [k, k, k, k], padding_mode="reflect")
        rows, cols = rows + dy[:, None], cols + dx[:, None]
    if flip:
        coins = (_draw((b,), generator, "uniform") < 0.5).to(dev)
        cols = torch.where(coins[:, None], cols.flip(1), cols)
    return src[torch.arange(b, device=dev)[:, None, None, None], torch.arange(c, device=dev)[None, :, None, None],
               rows[:, None, :, None], cols[:, None, None, :]]


def make_augment(spec: AugmentSpec) -> Augment:
    """The weak batch augmentation ``(x [B, C, H, W] or [B, D], generator) -> same shape`` of ``spec``."""

    def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if x.dim() == 4 and (spec.translate > 0 or spec.flip):
            x = translate_flip(x, spec.translate, spec.flip, generator)
        if spec.noise_std > 0:
            x = x + spec.noise_std * _draw(tuple(x.shape), generator, "normal").to(x.device)
        return x

    return augment


def weak_augment_for(dataset: str) -> Augment:
    """The weak augmentation of ``dataset``: ``(x [B, C, H, W] or [B, D], generator) -> same shape``
    (identity for datasets without an entry)."""
    return make_augment(WEAK.get(dataset, AugmentSpec()))


def _ra_op(name: str, level: float, sign: int, h: int, w: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """One non-blend RandAugment op at ``level`` in (0, 1) and ``sign`` +-1, on pixels [N, C, H, W] in [0, 1]."""
    fill = [GRAY]
    if name == "Identity":
        return lambda x: x
    if name == "AutoContrast":
        return TF.autocontrast
    if name == "Equalize":
        return TF.equalize
    if name == "Rotate":
        return lambda x: TF.rotate(x, 30.0 * level * sign, interpolation=_NEAREST, fill=fill)
    if name == "Solarize":
        return lambda x: TF.solarize(x, 1.0 - level)
    if name in ("ShearX", "ShearY"):
        deg = math.degrees(math.atan(0.3 * level * sign))
        shear = [deg, 0.0] if name == "ShearX" else [0.0, deg]
        return lambda x: TF.affine(x, angle=0.0, translate=[0, 0], scale=1.0, shear=shear,
                                   interpolation=_NEAREST, fill=fill, center=[0, 0])
    if name in ("TranslateX", "TranslateY"):
        shift = [sign * round(0.3 * level * w), 0] if name == "TranslateX" else [0, sign * round(0.3 * level * h)]
        return lambda x: TF.affine(x, angle=0.0, translate=shift, scale=1.0, shear=[0.0, 0.0],
                                   interpolation=_NEAREST, fill=fill)
    if name == "Posterize":
        bits = 4 + int(4 * level)
        # posterize on floats rounds through uint8 internally; keep the [0, 1] float scale
        return lambda x: TF.posterize(x, bits)
    raise ValueError(f"unknown RandAugment op {name!r}")


_NO_LEVEL = ("AutoContrast", "Equalize")
_SIGNED = ("Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY")
_BLEND_OPS = {"Color": TF.adjust_saturation, "Contrast": TF.adjust_contrast,
               "Brightness": TF.adjust_brightness, "Sharpness": TF.adjust_sharpness}


def _blend_batch(name: str, x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """torchvision's enhancement op ``name`` with a per-image factor [N] on x [N, C, H, W] in [0, 1].

    Each of these ops is ``clamp(f * x + (1 - f) * degenerate)``, with degenerate the op at factor 0
    (black, gray mean, grayscale, blurred interior), so one torchvision call serves the whole group.
    """
    degenerate = _BLEND_OPS[name](x, 0.0)
    f = factor[:, None, None, None]
    return (f * x + (1 - f) * degenerate).clamp(0.0, 1.0)


def rand_augment(p: torch.Tensor, generator: torch.Generator, num_ops: int = 2) -> torch.Tensor:
    """FixMatch RandAugment of pixels p [B, C, H, W] in [0, 1] -> same shape, in [0, 1].

    Per sample and per op slot (independently): op index uniform over :data:`RA_OPS`, applied with
    probability 1/2, level uniform in {1..9}/10, sign +-1 with probability 1/2. Draws [B, num_ops]
    each of: op, apply coin, level, sign. Samples that share (slot, op, level, sign) go through
    the torchvision op together (Color/Contrast/Brightness/Sharpness: all samples of an op at once,
    see :func:`_blend_batch`), so a batch costs one call per distinct op parameter set.
    """
    b, _, h, w = p.shape
    shape = (b, num_ops)
    ops = host_values(_draw(shape, generator, "int", len(RA_OPS)))
    apply = host_values(_draw(shape, generator, "uniform") < 0.5)
    levels = host_values(_draw(shape, generator, "int", 9) + 1)
    signs = host_values(_draw(shape, generator, "uniform") < 0.5)
    out = p.clone()
    for slot in range(num_ops):
        groups: dict[tuple, list[int]] = {}
        for i in range(b):
            name = RA_OPS[ops[i][slot]]
            if not apply[i][slot] or name == "Identity":
                continue
            # Enhancement ops are a blend with a degenerate image, linear in the factor: one call per op.
            # Other ops group by the parameters they use, so unsigned/parameter-free ones share calls.
            if name in _BLEND_OPS or name in _NO_LEVEL:
                key = (name,)
            else:
                key = (name, levels[i][slot], signs[i][slot] and name in _SIGNED)
            groups.setdefault(key, []).append(i)
        for key, members in groups.items():
            idx = torch.tensor(members, device=p.device)
            if key[0] in _NO_LEVEL:
                out[idx] = _ra_op(key[0], 0.0, 1, h, w)(out[idx]).clamp(0.0, 1.0)
            elif len(key) == 1:
                factor = torch.tensor([0.1 + 0.18 * levels[i][slot] for i in members], dtype=p.dtype)
                out[idx] = _blend_batch(key[0], out[idx], factor.to(p.device))
            else:
                name, level, neg = key
                out[idx] = _ra_op(name, level / 10.0, -1 if neg else 1, h, w)(out[idx]).clamp(0.0, 1.0)
    return out


def cutout(x: torch.Tensor, fraction: float, fill: torch.Tensor | float, generator: torch.Generator) -> torch.Tensor:
    """Fill one square of side ``s = round(fraction * min(H, W))`` per image with ``fill`` (scalar or [C]).

    The square covers rows [cy - s//2, cy - s//2 + s) and columns [cx - s//2, cx - s//2 + s), clipped
    to the image, with centre (cy, cx) uniform over the pixels (FixMatch's ``cutout_numpy``: near
    the border the patch is cut off). Draws cy [B] then cx [B]. x [B, C, H, W] -> same shape.
    """
    b, c, h, w = x.shape
    side = max(1, int(round(fraction * min(h, w))))
    cy = _draw((b,), generator, "int", h).to(x.device)
    cx = _draw((b,), generator, "int", w).to(x.device)
    top, left = cy - side // 2, cx - side // 2
    rows = torch.arange(h, device=x.device)[None, :]
    cols = torch.arange(w, device=x.device)[None, :]
    in_r = ((rows >= top[:, None]) & (rows < top[:, None] + side))[:, :, None]
    in_c = ((cols >= left[:, None]) & (cols < left[:, None] + side))[:, None, :]
    fill_t = torch.as_tensor(fill, dtype=x.dtype, device=x.device).reshape(-1, 1, 1).expand(c, h, w)
    return torch.where((in_r & in_c)[:, None], fill_t, x)


def make_strong_augment(spec: AugmentSpec, num_ops: int = 2, cutout_fraction: float = CUTOUT_FRACTION) -> Augment:
    """The strong batch augmentation of ``spec``: ``(x, generator) -> same shape``.

    Images x [B, C, H, W] (normalised with spec.mean/std): weak, un-normalise and clamp to [0, 1],
    :func:`rand_augment` with ``num_ops`` ops, :func:`cutout` with gray, re-normalise. Vectors
    x [B, D]: weak, then extra Gaussian noise of 3 * spec.noise_std. Datasets without statistics
    get only the weak augmentation on images.
    """
    weak = make_augment(spec)

    def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        x = weak(x, generator)
        if x.dim() == 4:
            if not spec.mean:
                return x
            if len(spec.mean) != x.shape[1]:
                raise ValueError(f"strong augmentation: {len(spec.mean)} channel statistics for {x.shape[1]} channels")
            mean = torch.tensor(spec.mean, dtype=x.dtype, device=x.device)[:, None, None]
            std = torch.tensor(spec.std, dtype=x.dtype, device=x.device)[:, None, None]
            p = (x * std + mean).clamp(0.0, 1.0)
            if num_ops > 0:
                p = rand_augment(p, generator, num_ops)
            if cutout_fraction > 0:
                p = cutout(p, cutout_fraction, GRAY, generator)
            return (p - mean) / std
        if spec.noise_std > 0:
            x = x + 3 * spec.noise_std * _draw(tuple(x.shape), generator, "normal").to(x.device)
        return x

    return augment


def strong_augment_for(dataset: str) -> Augment:
    """The strong augmentation of ``dataset`` (FixMatch's RandAugment + Cutout on top of the weak one
    for images; more noise for vectors): ``(x [B, C, H, W] or [B, D], generator) -> same shape``."""
    return make_strong_augment(WEAK.get(dataset, AugmentSpec()))


def _benchmark(batch: int = 128, reps: int = 5) -> None:
    """Print ms per batch of ``batch`` random normalised inputs, weak and strong, per dataset."""
    from .registry import get_info

    g = torch.Generator().manual_seed(0)
    print(f"ms per batch of {batch} (CPU, {torch.get_num_threads()} threads, median of {reps})")
    for name in WEAK:
        x = torch.randn((batch, *get_info(name).input_shape), generator=g)
        row = []
        for kind, aug in (("weak", weak_augment_for(name)), ("strong", strong_augment_for(name))):
            aug(x, g)  # warm-up
            times = []
            for _ in range(reps):
                t = time.perf_counter()
                aug(x, g)
                times.append(time.perf_counter() - t)
            row.append(f"{kind} {1000 * sorted(times)[reps // 2]:8.2f}")
        print(f"{name:14s} {tuple(x.shape[1:])!s:14s} " + "  ".join(row))


if __name__ == "__main__":
    _benchmark()
