"""synthetic_landmarks: grey face-like drawings with 5 landmarks, rendered in-process from a seed.

An offline stand-in for AFLW (L2I 001 Sec. 5.2) that is hard enough for labels to matter: every image
draws its own head pose (in-plane roll, plus yaw and pitch that move the features non-rigidly: the
nose tip moves more than the eyes), face scale and position, face shape (eye spacing and height,
nose length, mouth width and curvature, eye size and openness), eyebrows and background blobs as
distractors, lighting (brightness, contrast, an illumination gradient over the image, sensor noise)
and, in 40% of the images, a rectangular occluder of random grey level that may hide landmarks.

Landmarks follow :mod:`datasets.landmarks` (left eye centre, right eye centre, nose tip, left and
right mouth corner, in pixels), and are exactly the points the drawing is built around: the centres
of the eye ellipses, the point between the nostrils, the two ends of the mouth stroke.

Rendering is vectorised numpy in float32 on a fixed chunk size, with per-image trigonometry in
Python floats, so the same seed gives the same uint8 images on every machine. Images are quantised
to uint8 (as photographs are), then standardised with the training pool's statistics. The 13,000
images take seconds to draw; loads read them from an on-disk cache after the first.
"""
from __future__ import annotations

import functools
import hashlib
import math

import numpy as np
import torch

from .base import REGRESSION, DatasetInfo, DatasetTensors, Source
from .generated_cache import cached_arrays
from .landmarks import TARGET_DIM
from .normalize import standardize_images_uint8

SIZE = 48  # image side: at least 44, the smallest input TCDCN (the papers' network) takes
N_TRAIN = 10_000
N_TEST = 3_000
SEED = 0
S_MIN, S_MAX = 14.0, 18.0  # face half-height in pixels: the face fills most of the image, as AFLW crops
_CHUNK = 500  # images rendered at once: fixed, because the noise is drawn chunk by chunk
# Patch sides (pixels) for what is drawn in a patch around its centre: at least 2 (e + 1) + 1 for a shape whose
# points lie within e pixels of its centre (half a pixel of anti-aliasing ramp, half of rounding the centre):
# brow e = 0.17 S_MAX, eye 0.15 S_MAX, mouth 0.36 S_MAX, blob 10, face S_MAX. test_synthetic_landmarks checks
# that drawing in patches equals drawing on the whole image at the extremes of the parameters.
_FEATURE_WINDOW = 10
_MOUTH_WINDOW = 18
_BLOB_WINDOW = 24
_FACE_WINDOW = 40

SYNTHETIC_LANDMARKS_INFO = DatasetInfo(
    name="synthetic_landmarks", num_classes=0, input_shape=(1, SIZE, SIZE), offline=True, train_class_counts=(),
    paper_n_val=None, task=REGRESSION, target_dim=TARGET_DIM, pool_size=N_TRAIN,
    description=f"offline face-like drawings: {N_TRAIN:,} train / {N_TEST:,} test {SIZE}x{SIZE} grey images, "
                "5 landmarks under random pose, scale, shift, lighting and occlusion (seed 0)",
)


def _u(rng: np.random.Generator, n: int, lo: float, hi: float) -> np.ndarray:
    return rng.uniform(lo, hi, n)


def draw_params(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per-image parameters [n] (float64), drawn in a fixed order. Lengths are in units of the face's
    half-height s (pixels) in a face frame centred on the face, x right, y down, before pose."""
    p = {
        "s": _u(rng, n, S_MIN, S_MAX), "cx": SIZE / 2 + _u(rng, n, -3, 3), "cy": SIZE / 2 + _u(rng, n, -3, 3),
        "roll": np.radians(_u(rng, n, -25, 25)), "yaw": np.radians(_u(rng, n, -35, 35)),
        "pitch": np.radians(_u(rng, n, -15, 15)),
        "face_ax": _u(rng, n, 0.68, 0.85),
        "eye_dx": _u(rng, n, 0.30, 0.42), "eye_y": _u(rng, n, -0.34, -0.18),
        "eye_r": _u(rng, n, 0.09, 0.14), "eye_open": _u(rng, n, 0.5, 0.95),
        "brow_dy": _u(rng, n, 0.15, 0.26), "brow_dark": _u(rng, n, 0.0, 1.0),
        "nose_y": _u(rng, n, 0.04, 0.22), "mouth_y": _u(rng, n, 0.40, 0.56), "mouth_w": _u(rng, n, 0.22, 0.36),
        "smile": _u(rng, n, -0.12, 0.2), "lip": _u(rng, n, 0.04, 0.09),
        "bg": _u(rng, n, 0.1, 0.9), "skin_delta": _u(rng, n, 0.08, 0.45) * rng.choice([-1.0, 1.0], n),
        "feat_dark": _u(rng, n, 0.15, 0.45),
        "n_blobs": rng.integers(0, 4, n).astype(np.float64),
        "contrast": _u(rng, n, 0.5, 1.3), "brightness": _u(rng, n, -0.15, 0.15),
        "grad": _u(rng, n, 0.0, 1.0), "grad_dir": _u(rng, n, 0, 2 * math.pi), "noise": _u(rng, n, 0.005, 0.04),
        "occlude": (rng.uniform(0, 1, n) < 0.4).astype(np.float64),
        "occ_w": _u(rng, n, 6, 18), "occ_h": _u(rng, n, 6, 18), "occ_dx": _u(rng, n, -1, 1),
        "occ_dy": _u(rng, n, -1, 1), "occ_level": _u(rng, n, 0, 1),
    }
    for k in range(3):  # background blobs (used when k < n_blobs)
        p[f"blob{k}_x"], p[f"blob{k}_y"] = _u(rng, n, 0, SIZE), _u(rng, n, 0, SIZE)
        p[f"blob{k}_r"], p[f"blob{k}_level"] = _u(rng, n, 3, 10), _u(rng, n, 0, 1)
    return p


def _trig(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # math.cos/sin per image: numpy's vectorised transcendentals may differ in the last bit between CPUs.
    return np.array([math.cos(v) for v in a]), np.array([math.sin(v) for v in a])


# depth of each feature out of the face plane (face half-heights): under yaw/pitch the nose tip moves most
_DEPTH = {"eye": 0.3, "brow": 0.3, "nose": 0.6, "mouth": 0.35}
NOSTRIL_GAP = 0.07  # half the distance between the nostrils (face half-heights); the nose tip lies between


def feature_layout(p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Feature centres in pixels after pose: name -> [n, 2] (x, y). Keys: the 5 landmarks (eye_l, eye_r,
    nose, mouth_l, mouth_r) and the drawing's helpers (brow_l, brow_r, nostril_l, nostril_r).

    Pose: a feature at face-frame (x, y) with depth z moves to (x cos(yaw) + z sin(yaw), y cos(pitch) +
    z sin(pitch)), then rotates by roll, scales by s and translates to (cx, cy).
    """
    cyaw, syaw = _trig(p["yaw"])
    cpitch, spitch = _trig(p["pitch"])
    croll, sroll = _trig(p["roll"])
    zero = np.zeros_like(p["s"])
    frame = {
        "eye_l": (-p["eye_dx"], p["eye_y"], "eye"), "eye_r": (p["eye_dx"], p["eye_y"], "eye"),
        "nose": (zero, p["nose_y"], "nose"),
        "mouth_l": (-p["mouth_w"], p["mouth_y"], "mouth"), "mouth_r": (p["mouth_w"], p["mouth_y"], "mouth"),
        "brow_l": (-p["eye_dx"], p["eye_y"] - p["brow_dy"], "brow"),
        "brow_r": (p["eye_dx"], p["eye_y"] - p["brow_dy"], "brow"),
        "nostril_l": (zero - NOSTRIL_GAP, p["nose_y"], "nose"), "nostril_r": (zero + NOSTRIL_GAP, p["nose_y"], "nose"),
    }
    out = {}
    for name, (x, y, kind) in frame.items():
        z = _DEPTH[kind]
        xp, yp = x * cyaw + z * syaw, y * cpitch + z * spitch
        out[name] = np.stack([p["cx"] + p["s"] * (xp * croll - yp * sroll), p["cy"] + p["s"] * (xp * sroll + yp * croll)], 1)
    return out


def landmark_targets(layout: dict[str, np.ndarray]) -> np.ndarray:
    """The 5 landmarks of a :func:`feature_layout` as float32 targets [n, 10] (x0, y0, ..., x4, y4)."""
    return np.concatenate([layout[k] for k in ("eye_l", "eye_r", "nose", "mouth_l", "mouth_r")], 1).astype(np.float32)


def _col(a: np.ndarray) -> np.ndarray:
    """Per-image values [m] -> float32 [m, 1, 1], to broadcast over images [m, S, S]."""
    return np.asarray(a, dtype=np.float32)[:, None, None]


class _Canvas:
    """A chunk of m images [m, S, S] (float32, 0 = black) and the roll of each, to draw in the face's axes.

    Small features are drawn in a ``window`` x ``window`` patch around their centre only (the patch's pixels
    are gathered, blended and scattered back): the same result as drawing on the whole image wherever the
    feature fits in its patch, at a fraction of the cost.
    """

    def __init__(self, bg: np.ndarray, roll: np.ndarray) -> None:
        m = len(bg)
        grid = np.arange(SIZE, dtype=np.float32)
        self.X, self.Y = grid[None, None, :], grid[None, :, None]  # pixel (row i, col j) is the point (j, i)
        self.img = np.broadcast_to(_col(bg), (m, SIZE, SIZE)).copy()
        self.base = (np.arange(m) * SIZE * SIZE)[:, None, None]  # flat offset of each image
        c, s = _trig(roll)
        self.cos, self.sin = _col(c), _col(s)

    def _frame(self, centre: np.ndarray, window: int | None):
        """Pixel offsets (u along the face's x, v along its y) from centre [m, 2] over the drawing region, and the
        region's pixels (None: the whole image; else their flat indices into the chunk [m, w, w])."""
        if window is None:
            X, Y, where = self.X, self.Y, None
        else:
            top_left = np.clip(np.rint(centre).astype(np.int64) - window // 2, 0, SIZE - window)
            off = np.arange(window)
            cols, rows = top_left[:, 0, None, None] + off[None, None, :], top_left[:, 1, None, None] + off[None, :, None]
            X, Y, where = cols.astype(np.float32), rows.astype(np.float32), self.base + rows * SIZE + cols
        dx, dy = X - _col(centre[:, 0]), Y - _col(centre[:, 1])
        return dx * self.cos + dy * self.sin, dy * self.cos - dx * self.sin, where

    def _blend(self, cover: np.ndarray, level: np.ndarray, where) -> None:
        if where is None:
            self.img += cover * (_col(level) - self.img)
        else:
            flat = self.img.reshape(-1)  # a view: writing through it draws on the images
            patch = flat[where]
            flat[where] = patch + cover * (_col(level) - patch)

    def ellipse(self, centre: np.ndarray, ax: np.ndarray, ay: np.ndarray, level: np.ndarray,
                window: int | None = None) -> None:
        """Blend ``level`` [m] into an anti-aliased ellipse: centre [m, 2], semi-axes ax, ay [m] in pixels along the
        face's axes (a semi-axis of 0 draws nothing)."""
        u, v, where = self._frame(centre, window)
        a2, b2 = _col(np.maximum(ax, 1e-3) ** 2), _col(np.maximum(ay, 1e-3) ** 2)
        # signed distance to the border ~ (q - 1) / |grad q| for q = (u/a)^2 + (v/b)^2 (first order, close to
        # exact near the border however elongated the ellipse); a one-pixel linear ramp anti-aliases the edge
        q = u * u / a2 + v * v / b2
        dist = (q - 1.0) / (2.0 * np.sqrt((u / a2) ** 2 + (v / b2) ** 2) + 1e-6)
        cover = np.clip(0.5 - dist, 0.0, 1.0)
        cover *= _col(np.minimum(ax, ay) > 1e-3)
        self._blend(cover, level, where)

    def stroke(self, left: np.ndarray, right: np.ndarray, sag: np.ndarray, thick: np.ndarray, level: np.ndarray,
               window: int | None = None) -> None:
        """A lens-shaped stroke from ``left`` to ``right`` [m, 2] (level in the face's axes): the parabola
        v = sag * (1 - (u / half)^2), ``thick`` [m] pixels thick in the middle, tapering to the two end points."""
        u, v, where = self._frame((left + right) / 2, window)
        half = _col(np.linalg.norm(right - left, axis=1) / 2)
        t = np.clip(1.0 - (u / half) ** 2, 0.0, 1.0)
        cover = np.clip(0.5 + _col(thick) * np.sqrt(t) / 2 - np.abs(v - _col(sag) * t), 0.0, 1.0)
        self._blend(cover * (np.abs(u) < half), level, where)

    def rectangle(self, x0: np.ndarray, y0: np.ndarray, x1: np.ndarray, y1: np.ndarray, level: np.ndarray,
                  on: np.ndarray) -> None:
        """Blend ``level`` into the axis-aligned rectangle [x0, x1) x [y0, y1) of every image where ``on``."""
        inside = ((self.X >= _col(x0)) & (self.X < _col(x1)) & (self.Y >= _col(y0)) & (self.Y < _col(y1)))
        self._blend(inside * _col(on), level, None)


def _render_chunk(p: dict[str, np.ndarray], lay: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Draw the images of parameters p (each [m]) with layout lay -> uint8 [m, S, S]."""
    s = p["s"]
    cyaw, _ = _trig(p["yaw"])
    cpitch, _ = _trig(p["pitch"])
    cv = _Canvas(p["bg"], p["roll"])
    for k in range(3):
        on = k < p["n_blobs"]
        r = p[f"blob{k}_r"] * on
        cv.ellipse(np.stack([p[f"blob{k}_x"], p[f"blob{k}_y"]], 1), r, r * 0.7, p[f"blob{k}_level"], window=_BLOB_WINDOW)
    skin = np.clip(p["bg"] + p["skin_delta"], 0.3, 0.95)  # >= 0.3 so that features can be darker than skin
    feature = np.clip(skin - p["feat_dark"], 0.0, 1.0)
    centre = np.stack([p["cx"], p["cy"]], 1)
    cv.ellipse(centre, s * p["face_ax"] * (0.85 + 0.15 * cyaw), s * (0.9 + 0.1 * cpitch), skin, window=_FACE_WINDOW)
    brow = skin - p["brow_dark"] * (skin - feature)
    for side in ("l", "r"):
        cv.ellipse(lay[f"brow_{side}"], s * 0.17 * cyaw, s * 0.04 * cpitch, brow, window=_FEATURE_WINDOW)
        cv.ellipse(lay[f"eye_{side}"], s * p["eye_r"] * cyaw, s * p["eye_r"] * p["eye_open"] * cpitch, feature,
                   window=_FEATURE_WINDOW)
        cv.ellipse(lay[f"nostril_{side}"], s * 0.035, s * 0.03, feature, window=_FEATURE_WINDOW)
    cv.stroke(lay["mouth_l"], lay["mouth_r"], s * 0.5 * p["smile"] * cpitch, s * p["lip"], feature,
              window=_MOUTH_WINDOW)
    occ_x, occ_y = p["cx"] + p["occ_dx"] * s, p["cy"] + p["occ_dy"] * s
    cv.rectangle(occ_x - p["occ_w"] / 2, occ_y - p["occ_h"] / 2, occ_x + p["occ_w"] / 2, occ_y + p["occ_h"] / 2,
                 p["occ_level"], p["occlude"])
    # lighting: an illumination gradient across the image, then contrast and brightness, then sensor noise
    gc, gs = _trig(p["grad_dir"])
    ramp = ((cv.X - SIZE / 2) * _col(gc) + (cv.Y - SIZE / 2) * _col(gs)) / SIZE
    img = cv.img * (1.0 + _col(p["grad"]) * ramp)
    img = (img - 0.5) * _col(p["contrast"]) + 0.5 + _col(p["brightness"])
    img += rng.standard_normal(img.shape, dtype=np.float32) * _col(p["noise"])
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)


def generate(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n images and their landmarks from ``seed``: uint8 [n, S, S] and float32 targets [n, 10] in pixels.

    A pure function of (n, seed): parameters come from ``np.random.default_rng(seed)`` first, then the
    noise chunk by chunk from the same generator.
    """
    rng = np.random.default_rng(seed)
    p = draw_params(n, rng)
    lay = feature_layout(p)
    images = np.empty((n, SIZE, SIZE), dtype=np.uint8)
    for start in range(0, n, _CHUNK):
        sl = slice(start, min(n, start + _CHUNK))
        images[sl] = _render_chunk({k: v[sl] for k, v in p.items()}, {k: v[sl] for k, v in lay.items()}, rng)
    return images, landmark_targets(lay)


def generate_cached(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`generate`, through the on-disk cache (datasets.generated_cache): keyed by this file's source and
    numpy's version too, so the result always equals a fresh generation."""
    with open(__file__, "rb") as f:
        source = hashlib.sha256(f.read()).hexdigest()
    arrays = cached_arrays("synthetic_landmarks", (n, seed, source, np.__version__),
                           {"x": (n, SIZE, SIZE), "y": (n, TARGET_DIM)},
                           lambda: dict(zip(("x", "y"), generate(n, seed))))
    return arrays["x"], arrays["y"]


@functools.lru_cache(maxsize=1)
def _load() -> DatasetTensors:
    x_tr, y_tr = generate_cached(N_TRAIN, SEED)
    x_te, y_te = generate_cached(N_TEST, SEED + 1)
    x_tr_f, x_te_f = standardize_images_uint8(torch.from_numpy(x_tr).unsqueeze(1), torch.from_numpy(x_te).unsqueeze(1))
    return DatasetTensors(SYNTHETIC_LANDMARKS_INFO, x_tr_f, torch.from_numpy(y_tr), x_te_f, torch.from_numpy(y_te))


def load_synthetic_landmarks(data_root: str | None = None, download: bool = False) -> DatasetTensors:
    """synthetic_landmarks: x_train [10000, 1, 48, 48], y_train [10000, 10] float32 (pixels), x_test
    [3000, 1, 48, 48], y_test [3000, 10] (cached in-process, and the generated images on disk)."""
    return _load()


SOURCES = [Source(SYNTHETIC_LANDMARKS_INFO, load_synthetic_landmarks)]
