"""aflw: the 5-landmark AFLW release the Learning to Impute papers use, from --data-root.

The papers (L2I 001 Sec. 5.2, 000 Sec. 4.2) use AFLW with TCDCN's five landmarks and "the official train
(10,122 images) and test (2,991 images) splits". That split is the AFLW/MTFL release of Jakab et al.
(NeurIPS 2018, "Unsupervised learning of object landmarks through conditional image generation"),
``aflw_release-2.zip``, which the official L2I code reads (its README points there; default data root
``./data/aflw_release-2/``). Layout, under ``--data-root`` (or its ``aflw_release-2/`` or ``aflw/`` folder):

    aflw_train_images.txt       10,122 lines: image file names, relative to output/
    aflw_train_keypoints.mat    'gt': [10122, 5, 2] landmarks as (y, x) pixels of the image file
    aflw_test_images.txt        2,991 lines
    aflw_test_keypoints.mat     'gt': [2991, 5, 2]
    output/                     the face crops

As the official L2I code: each image is read as RGB, resized to 60x60 (PIL bilinear), converted to grey
(PIL's "L"), and its landmarks become (x * 60 / width, y * 60 / height) of the original image size, in the
order left eye, right eye, nose, left mouth corner, right mouth corner (datasets.landmarks). Pixels are then
standardised with the training pool's statistics (the L2I code feeds [0, 1] pixels). The papers' validation
set is 10% of the training images (1,012; the code takes the last 10% of the file); here validation follows
the suite's protocol (as scarce as the labels, or 1,012 random training images with --val-protocol paper).
"""
from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from .base import REGRESSION, DatasetInfo, DatasetTensors, DatasetUnavailable, Source
from .landmarks import NUM_LANDMARKS, TARGET_DIM
from .normalize import standardize_images_uint8

SIZE = 60  # TCDCN's input side
N_TRAIN, N_TEST = 10_122, 2_991
FOLDERS = ("aflw_release-2", "aflw", "")  # searched in this order under --data-root
INDEX_FILES = ("aflw_train_images.txt", "aflw_train_keypoints.mat", "aflw_test_images.txt", "aflw_test_keypoints.mat")
IMAGE_DIR = "output"
_REMEDY = ("unzip aflw_release-2.zip (Jakab et al. 2018's AFLW release, see docs/datasets.md) into --data-root so "
           "that DATA_ROOT/aflw_release-2/aflw_train_images.txt exists")

AFLW_INFO = DatasetInfo(
    name="aflw", num_classes=0, input_shape=(1, SIZE, SIZE), offline=False, train_class_counts=(),
    paper_n_val=1_012, task=REGRESSION, target_dim=TARGET_DIM, pool_size=N_TRAIN,
    description="AFLW, 5 landmarks (Jakab et al.'s aflw_release-2, as the L2I code): 10,122 train / 2,991 test "
                "faces as 60x60 grey images",
)


def find_root(data_root: str | None) -> str:
    """The folder holding the four index files and output/, or DatasetUnavailable (one line) naming what is missing."""
    if not data_root:
        raise DatasetUnavailable(f"aflw: no --data-root given; {_REMEDY}")
    root = os.path.abspath(os.path.expanduser(data_root))
    if not os.path.isdir(root):
        raise DatasetUnavailable(f"aflw: {root} not found; {_REMEDY}")
    candidates = [os.path.join(root, f) if f else root for f in FOLDERS]
    for folder in candidates:
        if all(os.path.isfile(os.path.join(folder, f)) for f in INDEX_FILES) and os.path.isdir(
                os.path.join(folder, IMAGE_DIR)):
            return folder
    # Name the first missing file of the most complete candidate: the likeliest fix.
    best = max(candidates, key=lambda c: sum(os.path.exists(os.path.join(c, f)) for f in INDEX_FILES + (IMAGE_DIR,)))
    missing = next(os.path.join(best, f) for f in INDEX_FILES + (IMAGE_DIR,) if not os.path.exists(os.path.join(best, f)))
    raise DatasetUnavailable(f"aflw: {missing} not found; {_REMEDY}")


def check_aflw(data_root: str | None = None, download: bool = False) -> None:
    """Raise DatasetUnavailable unless the release's index files and image folder exist (no loading)."""
    find_root(data_root)


def _read_subset(folder: str, subset: str) -> tuple[list[str], np.ndarray]:
    """Image paths and landmarks (x, y) [N, 5, 2] float64 in pixels of each image file."""
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    with open(os.path.join(folder, f"aflw_{subset}_images.txt")) as f:
        names = [line.strip() for line in f if line.strip()]
    mat_path = os.path.join(folder, f"aflw_{subset}_keypoints.mat")
    try:
        gt = np.asarray(loadmat(mat_path)["gt"], dtype=np.float64)
    except (OSError, ValueError, KeyError, NotImplementedError, MatReadError) as e:  # v7.3 files: NotImplementedError
        raise DatasetUnavailable(f"aflw: cannot read 'gt' from {mat_path} ({type(e).__name__}); {_REMEDY}") from e
    if gt.shape != (len(names), NUM_LANDMARKS, 2):
        raise DatasetUnavailable(f"aflw: {mat_path} holds landmarks of shape {gt.shape}, expected "
                                 f"({len(names)}, {NUM_LANDMARKS}, 2) for the {len(names)} images listed")
    return [os.path.join(folder, IMAGE_DIR, n) for n in names], gt[:, :, ::-1].copy()  # (y, x) -> (x, y)


def _read_image(path: str) -> tuple[np.ndarray, tuple[int, int]]:
    """One face as uint8 [60, 60] grey (RGB, bilinear resize, then grey, as the L2I code) and its (width, height)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            rgb = im.convert("RGB")
    except OSError as e:
        raise DatasetUnavailable(f"aflw: cannot read image {path} ({type(e).__name__}); {_REMEDY}") from e
    return np.asarray(rgb.resize((SIZE, SIZE), Image.Resampling.BILINEAR).convert("L")), rgb.size


def _load_subset(folder: str, subset: str) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images [N, 1, 60, 60] and float32 targets [N, 10] (x0, y0, ..., in 60x60 pixels)."""
    paths, points = _read_subset(folder, subset)
    # PIL decodes and resizes without the GIL: threads read the 13k files several times faster.
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        read = list(pool.map(_read_image, paths))
    images = np.stack([img for img, _ in read]) if read else np.zeros((0, SIZE, SIZE), np.uint8)
    sizes = np.array([wh for _, wh in read], dtype=np.float64).reshape(-1, 1, 2)  # (width, height)
    targets = (points * SIZE / sizes).reshape(len(paths), TARGET_DIM).astype(np.float32)
    return torch.from_numpy(images).unsqueeze(1), torch.from_numpy(targets)


@functools.lru_cache(maxsize=2)
def _load(folder: str, stamps: tuple[tuple[int, int], ...]) -> DatasetTensors:
    # stamps (mtime, size) of the index files are part of the cache key so a replaced release is re-read.
    x_tr, y_tr = _load_subset(folder, "train")
    x_te, y_te = _load_subset(folder, "test")
    x_tr, x_te = standardize_images_uint8(x_tr, x_te)
    return DatasetTensors(AFLW_INFO, x_tr, y_tr, x_te, y_te)


def load_aflw(data_root: str | None = None, download: bool = False) -> DatasetTensors:
    """AFLW: x_train [10122, 1, 60, 60], y_train [10122, 10] float32 (60x60 pixels), x_test [2991, 1, 60, 60],
    y_test [2991, 10]; cached in-process. There is no download: the release must be under data_root."""
    folder = find_root(data_root)
    stamps = tuple((os.stat(p).st_mtime_ns, os.stat(p).st_size) for p in (os.path.join(folder, f) for f in INDEX_FILES))
    return _load(folder, stamps)


SOURCES = [Source(AFLW_INFO, load_aflw, check_aflw, downloadable=False)]
