"""Batched augmentations (datasets.augment) against independent computations: numpy reflect-pad-and-
crop brute force for the weak views, per-sample torchvision calls with FixMatch's magnitude table
for RandAugment, a brute-force clipped square for Cutout, hand formulas for vector noise."""
import math
import os

import numpy as np
import pytest
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

import datasets as D
from datasets import augment as A

IMAGE_SETS = ["digits", "fashion_mnist", "cifar10", "cifar100", "svhn", "stl10"]


def gen(seed):
    return torch.Generator().manual_seed(seed)


def images(name, b, seed=0):
    """Normalised-looking images: pixels in [0.05, 0.45] or [0.55, 0.95] standardised with the dataset's
    statistics, so no un-normalised pixel is clamped, AutoContrast/Solarize have something to do,
    and no pixel is Cutout's gray 0.5 by chance."""
    shape = D.get_info(name).input_shape
    spec = A.WEAK[name]
    g = gen(seed)
    p = 0.05 + 0.4 * torch.rand((b, *shape), generator=g) + 0.5 * (torch.rand((b, *shape), generator=g) < 0.5)
    mean = torch.tensor(spec.mean)[:, None, None]
    std = torch.tensor(spec.std)[:, None, None]
    return (p - mean) / std


def to_pixels(name, x):
    spec = A.WEAK[name]
    return x * torch.tensor(spec.std)[:, None, None] + torch.tensor(spec.mean)[:, None, None]


def numpy_views(img, k, flips):
    """Every reflect-pad-by-k crop (dy, dx in 0..2k) of img [C, H, W], optionally mirrored: dict -> array."""
    c, h, w = img.shape
    padded = np.pad(img, ((0, 0), (k, k), (k, k)), mode="reflect")
    out = {}
    for dy in range(2 * k + 1):
        for dx in range(2 * k + 1):
            crop = padded[:, dy:dy + h, dx:dx + w]
            for f in flips:
                out[(dy, dx, f)] = crop[:, :, ::-1] if f else crop
    return out


def matches(out, inp, k, flips):
    views = numpy_views(inp.numpy(), k, flips)
    o = out.numpy()
    return [key for key, v in views.items() if np.array_equal(v, o)]


@pytest.mark.parametrize("name", ["two_circles"] + IMAGE_SETS)
def test_shapes_dtypes_and_determinism(name):
    shape = D.get_info(name).input_shape
    x = torch.randn((6, *shape), generator=gen(0))
    for aug in (A.weak_augment_for(name), A.strong_augment_for(name)):
        a, b, c = aug(x, gen(1)), aug(x, gen(1)), aug(x, gen(2))
        assert a.shape == x.shape and a.dtype == x.dtype and torch.isfinite(a).all()
        assert torch.equal(a, b)  # same generator state -> same output (data parallelism relies on it)
        assert not torch.equal(a, c)
        g = gen(1)
        aug(x, g)
        assert not torch.equal(aug(x, g), a)  # the generator advances: the next call differs
    # global RNG must play no part
    torch.manual_seed(123)
    a = A.strong_augment_for(name)(x, gen(5))
    torch.manual_seed(456)
    assert torch.equal(a, A.strong_augment_for(name)(x, gen(5)))


@pytest.mark.parametrize("name,k,flips", [("cifar10", 4, (False, True)), ("cifar100", 4, (False, True)),
                                          ("svhn", 2, (False,)), ("digits", 1, (False,)),
                                          ("fashion_mnist", 2, (False, True))])
def test_weak_is_a_reflect_padded_crop(name, k, flips):
    """Every output equals exactly one of the (2k+1)^2 reflect-padded crops (x2 flips where the paper
    flips) of its own input, computed with numpy; shifts and flips vary per sample."""
    b = 48
    x = torch.randn((b, *D.get_info(name).input_shape), generator=gen(3))
    out = A.weak_augment_for(name)(x, gen(4))
    found = []
    for i in range(b):
        m = matches(out[i], x[i], k, flips)
        assert len(m) == 1, (i, m)
        found.append(m[0])
    assert len({(dy, dx) for dy, dx, _ in found}) >= 8  # per-sample shifts, not one per batch
    if len(flips) == 2:
        assert 0 < sum(f for _, _, f in found) < b
    # the extreme shifts occur (the range is really +-k), in both directions
    for axis in (0, 1):
        assert min(f[axis] for f in found) == 0 and max(f[axis] for f in found) == 2 * k


def test_svhn_and_digits_never_flip():
    """With flips allowed in the search, every SVHN output still matches an unflipped crop only."""
    for name, k in (("svhn", 2), ("digits", 1)):
        x = torch.randn((64, *D.get_info(name).input_shape), generator=gen(7))
        out = A.weak_augment_for(name)(x, gen(8))
        for i in range(64):
            m = matches(out[i], x[i], k, (False, True))
            assert m and all(not f for _, _, f in m)


def test_stl10_weak_shift_is_12_pixels():
    x = torch.randn((6, 3, 96, 96), generator=gen(9))
    out = A.weak_augment_for("stl10")(x, gen(10))
    for i in range(6):
        assert len(matches(out[i], x[i], 12, (False, True))) == 1


def test_vectors_get_gaussian_noise():
    x = torch.randn(50, 2, generator=gen(0))
    n = torch.randn(50, 2, generator=gen(1))
    assert torch.allclose(A.weak_augment_for("two_circles")(x, gen(1)), x + 0.05 * n)
    g = gen(1)
    n1, n2 = torch.randn(50, 2, generator=g), torch.randn(50, 2, generator=g)
    assert torch.allclose(A.strong_augment_for("two_circles")(x, gen(1)), x + 0.05 * n1 + 0.15 * n2, atol=1e-6)


def clipped_square(h, w, side, cy, cx):
    m = torch.zeros(h, w, dtype=torch.bool)
    m[max(0, cy - side // 2):max(0, cy - side // 2 + side), max(0, cx - side // 2):max(0, cx - side // 2 + side)] = True
    return m


def clipped_intervals(n, side):
    """{[start, stop)} of a side-long interval centred on each pixel 0..n-1 (start c - side//2), clipped to [0, n)."""
    return {(max(0, c - side // 2), min(n, c - side // 2 + side)) for c in range(n)}


@pytest.mark.parametrize("name", ["cifar10", "digits", "stl10"])
def test_cutout_is_a_gray_clipped_square_of_half_the_side(name):
    """RandAugment off: the gray pixels form exactly one side/2 square clipped at the border, and the
    rest is the weak view (itself checked above)."""
    c, h, w = D.get_info(name).input_shape
    side = h // 2
    x = images(name, 24)
    strong = A.make_strong_augment(A.WEAK[name], num_ops=0)
    out = strong(x, gen(11))
    weak = A.weak_augment_for(name)(x, gen(11))
    gray = (to_pixels(name, out) - 0.5).abs() < 1e-5
    assert torch.equal(gray.all(1), gray.any(1))  # all channels together
    rows_ok, cols_ok = clipped_intervals(h, side), clipped_intervals(w, side)
    full = 0
    for i in range(out.shape[0]):
        mask = gray[i, 0]
        r = mask.any(1).nonzero().flatten()
        cc = mask.any(0).nonzero().flatten()
        box = (int(r[0]), int(r[-1]) + 1), (int(cc[0]), int(cc[-1]) + 1)
        rect = torch.zeros_like(mask)
        rect[box[0][0]:box[0][1], box[1][0]:box[1][1]] = True
        assert torch.equal(mask, rect) and box[0] in rows_ok and box[1] in cols_ok, (i, box)
        assert torch.allclose(out[i][:, ~mask], weak[i][:, ~mask], atol=1e-5)  # un-/re-normalising rounds
        full += int(mask.sum()) == side * side
    assert 0 < full < out.shape[0]  # centres are uniform over the image: some patches are clipped


@pytest.mark.parametrize("name", ["cifar10", "digits"])
def test_strong_contains_a_full_or_clipped_cutout_square(name):
    c, h, w = D.get_info(name).input_shape
    side = h // 2
    x = images(name, 16)
    out = A.strong_augment_for(name)(x, gen(12))
    gray = ((to_pixels(name, out) - 0.5).abs() < 1e-5).all(1)
    for i in range(16):
        assert any(bool(gray[i][clipped_square(h, w, side, cy, cx)].all()) for cy in range(h) for cx in range(w))


def fixmatch_candidates(p):
    """Every single RandAugment op of FixMatch's table applied to p [C, H, W] in [0, 1] (plus 'none'),
    one torchvision call per candidate: {(op, level, sign): image}."""
    c, h, w = p.shape
    near = InterpolationMode.NEAREST
    out = {("none", 0, 1): p}
    out[("AutoContrast", 0, 1)] = TF.autocontrast(p)
    out[("Equalize", 0, 1)] = TF.equalize(p)
    for k in range(1, 10):
        lv = k / 10
        f = 0.1 + 1.8 * lv
        out[("Solarize", k, 1)] = TF.solarize(p, 1 - lv)
        out[("Color", k, 1)] = TF.adjust_saturation(p, f)
        out[("Contrast", k, 1)] = TF.adjust_contrast(p, f)
        out[("Brightness", k, 1)] = TF.adjust_brightness(p, f)
        out[("Sharpness", k, 1)] = TF.adjust_sharpness(p, f)
        out[("Posterize", k, 1)] = TF.posterize(p, 4 + int(4 * lv))
        for s in (1, -1):
            out[("Rotate", k, s)] = TF.rotate(p, 30 * lv * s, interpolation=near, fill=[0.5])
            sh = math.degrees(math.atan(0.3 * lv * s))
            out[("ShearX", k, s)] = TF.affine(p, 0.0, [0, 0], 1.0, [sh, 0.0], interpolation=near, fill=[0.5], center=[0, 0])
            out[("ShearY", k, s)] = TF.affine(p, 0.0, [0, 0], 1.0, [0.0, sh], interpolation=near, fill=[0.5], center=[0, 0])
            out[("TranslateX", k, s)] = TF.affine(p, 0.0, [s * round(0.3 * lv * w), 0], 1.0, [0.0, 0.0], interpolation=near, fill=[0.5])
            out[("TranslateY", k, s)] = TF.affine(p, 0.0, [0, s * round(0.3 * lv * h)], 1.0, [0.0, 0.0], interpolation=near, fill=[0.5])
    return out


@pytest.mark.parametrize("name", ["cifar10", "digits"])
def test_one_op_randaugment_matches_a_fixmatch_op_per_sample(name):
    """num_ops=1, no Cutout: each output (pixels) is one of FixMatch's ops at one of its levels, applied
    to that sample alone by torchvision; ops are chosen per sample and about half the samples change."""
    b = 24
    x = images(name, b, seed=13)
    strong = A.make_strong_augment(A.WEAK[name], num_ops=1, cutout_fraction=0.0)
    out = to_pixels(name, strong(x, gen(14)))
    weak = to_pixels(name, A.weak_augment_for(name)(x, gen(14))).clamp(0, 1)
    ops_seen = set()
    changed = 0
    for i in range(b):
        cands = fixmatch_candidates(weak[i])
        hit = [k for k, v in cands.items() if torch.allclose(v, out[i], atol=1e-5)]
        assert hit, i
        ops_seen.add(hit[0][0])
        changed += not torch.allclose(out[i], weak[i], atol=1e-5)
    assert len(ops_seen) >= 5
    assert b * 0.2 < changed < b * 0.8  # each op applies with probability 1/2


@pytest.mark.parametrize("name", ["cifar10", "svhn", "fashion_mnist", "digits"])
def test_randaugment_changes_images(name):
    """Two ops at probability 1/2 each: about (1 - (1/2 + 1/28)^2) ~ 71% of images change beyond Cutout."""
    b = 128
    x = images(name, b, seed=15)
    ra = A.make_strong_augment(A.WEAK[name], cutout_fraction=0.0)(x, gen(16))
    weak = A.weak_augment_for(name)(x, gen(16))
    changed = ((ra - weak).abs().flatten(1).max(1).values > 1e-4).float().mean().item()
    assert 0.45 < changed < 0.9, changed


def test_digits_statistics_recover_the_raw_pixels():
    """sklearn digits are k/16 for integers k: un-normalising with the spec's stats must give them back."""
    d = D.load("digits")
    raw = to_pixels("digits", d.x_train) * 16
    assert (raw - raw.round()).abs().max() < 1e-4 and raw.min() > -1e-4 and raw.max() < 16 + 1e-4


@pytest.mark.skipif(not os.path.isdir("/usr/share/datasets/fashion-mnist"), reason="no local Fashion-MNIST")
def test_fashion_mnist_statistics_recover_uint8_pixels():
    d = D.load("fashion_mnist", "/usr/share/datasets/fashion-mnist")
    raw = to_pixels("fashion_mnist", d.x_train[:2000]) * 255
    assert (raw - raw.round()).abs().max() < 0.02


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")
@pytest.mark.parametrize("name", ["cifar10", "digits", "two_circles"])
def test_cuda_input_with_cpu_generator_matches_cpu(name):
    shape = D.get_info(name).input_shape
    x = torch.randn((16, *shape), generator=gen(0))
    for aug in (A.weak_augment_for(name), A.strong_augment_for(name)):
        cpu = aug(x, gen(1))
        cuda = aug(x.cuda(), gen(1))
        assert cuda.is_cuda and torch.allclose(cuda.cpu(), cpu, atol=1e-4)


def _translate_flip_per_image(x, pixels, flip, generator):
    """The per-image implementation translate_flip replaced (pad, crop each image, stack, flip)."""
    b, _, h, w = x.shape
    k = min(pixels, h - 1, w - 1)
    if k > 0:
        dy = torch.randint(0, 2 * k + 1, (b,), generator=generator).tolist()
        dx = torch.randint(0, 2 * k + 1, (b,), generator=generator).tolist()
        padded = TF.pad(x, [k, k, k, k], padding_mode="reflect")
        x = torch.stack([TF.crop(padded[i], dy[i], dx[i], h, w) for i in range(b)])
    if flip:
        coins = torch.rand((b,), generator=generator) < 0.5
        x = torch.where(coins[:, None, None, None], TF.horizontal_flip(x), x)
    return x


@pytest.mark.parametrize("shape,pixels,flip", [((3, 32, 32), 4, True), ((3, 32, 32), 4, False), ((1, 8, 8), 1, False),
                                               ((1, 8, 8), 0, True), ((3, 5, 7), 12, True), ((3, 9, 9), 0, False)])
def test_translate_flip_gather_equals_per_image_crops(shape, pixels, flip):
    """The one-gather crop/mirror gives the per-image crops bit for bit, from the same draws
    (training numbers do not move), and leaves the generator where they left it."""
    x = torch.randn((16, *shape), generator=gen(0))
    g1, g2 = gen(5), gen(5)
    assert torch.equal(A.translate_flip(x, pixels, flip, g1), _translate_flip_per_image(x, pixels, flip, g2))
    assert torch.equal(torch.rand(3, generator=g1), torch.rand(3, generator=g2))
