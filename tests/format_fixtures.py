"""Tiny datasets written in the real on-disk formats (CIFAR python pickles, SVHN .mat, STL-10 binary, AFLW release).

Each writer puts files where the loaders look under a data root and returns what it wrote, as the arrays a
correct reader must give back: images uint8 [N, C, H, W], labels int64 [N] (0-based), or AFLW's
(image names, original (x, y) landmarks, image sizes). The writers follow the published formats, not the
project's readers: CIFAR batches are Python-2-style dicts (protocol 2), SVHN is MATLAB v5 with labels
1..10 (10 for the digit 0), STL-10 stores each channel column-major.
"""
from __future__ import annotations

import os
import pickle

import numpy as np


def _balanced_labels(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    return rng.permutation(np.arange(n) % k)


def write_cifar10(root: str, n_train: int = 250, n_test: int = 20, seed: int = 0) -> dict[str, np.ndarray]:
    """cifar-10-batches-py/data_batch_1..5, test_batch, batches.meta; n_train split over the five batches."""
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(folder, exist_ok=True)
    x_tr = rng.integers(0, 256, (n_train, 3, 32, 32), dtype=np.uint8)
    y_tr = _balanced_labels(n_train, 10, rng)
    x_te = rng.integers(0, 256, (n_test, 3, 32, 32), dtype=np.uint8)
    y_te = rng.integers(0, 10, n_test)
    parts = np.array_split(np.arange(n_train), 5)
    for i, part in enumerate(parts, 1):
        _dump(os.path.join(folder, f"data_batch_{i}"), {
            "batch_label": f"training batch {i} of 5", "labels": y_tr[part].tolist(),
            "data": x_tr[part].reshape(len(part), -1), "filenames": [f"img_{j}.png" for j in part]})
    _dump(os.path.join(folder, "test_batch"), {"batch_label": "testing batch 1 of 1", "labels": y_te.tolist(),
                                               "data": x_te.reshape(n_test, -1), "filenames": ["t.png"] * n_test})
    _dump(os.path.join(folder, "batches.meta"), {"label_names": [f"class{c}" for c in range(10)],
                                                 "num_cases_per_batch": len(parts[0]), "num_vis": 3072})
    return {"x_train": x_tr, "y_train": y_tr, "x_test": x_te, "y_test": y_te}


def write_cifar100(root: str, n_train: int = 300, n_test: int = 100, seed: int = 1) -> dict[str, np.ndarray]:
    """cifar-100-python/train, test, meta (fine labels 0..99, coarse labels 0..19)."""
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, "cifar-100-python")
    os.makedirs(folder, exist_ok=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        fine = _balanced_labels(n, 100, rng)
        _dump(os.path.join(folder, split), {"filenames": [f"{split}_{j}.png" for j in range(n)], "batch_label": split,
                                            "fine_labels": fine.tolist(), "coarse_labels": (fine // 5).tolist(),
                                            "data": x.reshape(n, -1)})
        out[f"x_{split}"], out[f"y_{split}"] = x, fine
    _dump(os.path.join(folder, "meta"), {"fine_label_names": [f"f{c}" for c in range(100)],
                                         "coarse_label_names": [f"c{c}" for c in range(20)]})
    return out


def _dump(path: str, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_svhn(root: str, n_train: int = 250, n_test: int = 20, seed: int = 2) -> dict[str, np.ndarray]:
    """train_32x32.mat, test_32x32.mat: X uint8 [32, 32, 3, N], y [N, 1] in 1..10 (10 = digit 0)."""
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    os.makedirs(root, exist_ok=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        digit = _balanced_labels(n, 10, rng)
        stored = np.where(digit == 0, 10, digit).astype(np.uint8).reshape(n, 1)
        savemat(os.path.join(root, f"{split}_32x32.mat"), {"X": x.transpose(2, 3, 1, 0), "y": stored}, format="5")
        out[f"x_{split}"], out[f"y_{split}"] = x, digit
    return out


def write_stl10(root: str, n_train: int = 250, n_test: int = 20, n_unlabeled: int = 10, seed: int = 3) -> dict[str, np.ndarray]:
    """stl10_binary/{train,test}_X.bin, {train,test}_y.bin, unlabeled_X.bin, class_names.txt, fold_indices.txt."""
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, "stl10_binary")
    os.makedirs(folder, exist_ok=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test), ("unlabeled", n_unlabeled)):
        x = rng.integers(0, 256, (n, 3, 96, 96), dtype=np.uint8)
        # each channel column-major: the file's inner order is (column, row)
        np.ascontiguousarray(x.transpose(0, 1, 3, 2)).tofile(os.path.join(folder, f"{split}_X.bin"))
        out[f"x_{split}"] = x
        if split != "unlabeled":
            y = _balanced_labels(n, 10, rng)
            (y + 1).astype(np.uint8).tofile(os.path.join(folder, f"{split}_y.bin"))
            out[f"y_{split}"] = y
    with open(os.path.join(folder, "class_names.txt"), "w") as f:
        f.write("\n".join(f"class{c}" for c in range(10)) + "\n")
    with open(os.path.join(folder, "fold_indices.txt"), "w") as f:
        f.write("\n".join(" ".join(str(i) for i in range(c, n_train, 10)) for c in range(10)) + "\n")
    return out


# eyes, nose, mouth corners as fractions of (width, height): a face-like layout with the marks well apart
_FACE = np.array([[0.3, 0.35], [0.7, 0.35], [0.5, 0.55], [0.35, 0.75], [0.65, 0.75]])


def write_aflw(root: str, n_train: int = 40, n_test: int = 12, seed: int = 4, folder: str = "aflw_release-2",
               image_format: str = "png") -> dict[str, dict]:
    """Jakab et al.'s AFLW release: aflw_{train,test}_images.txt, aflw_{train,test}_keypoints.mat ('gt' [N, 5, 2]
    as (y, x), 'hw' [N, 2]) and the crops in output/ (sizes vary, as real crops do). Each image is dark with a
    bright 3x3 square on every landmark, so a reader's landmarks can be checked against the pixels.

    Returns per subset: names, points (x, y) [N, 5, 2] in original pixels, sizes (width, height) [N, 2].
    """
    from PIL import Image
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    base = os.path.join(root, folder)
    os.makedirs(os.path.join(base, "output"), exist_ok=True)
    out = {}
    for subset, n in (("train", n_train), ("test", n_test)):
        names, points, sizes = [], [], []
        for i in range(n):
            w, h = int(rng.integers(70, 140)), int(rng.integers(70, 140))
            pts = (_FACE + rng.uniform(-0.04, 0.04, (5, 2))) * (w, h)
            img = np.full((h, w, 3), 20, dtype=np.uint8)
            img[..., 1] = rng.integers(0, 40, (h, w))  # some colour, so the grey conversion matters
            for x, y in np.rint(pts).astype(int):
                img[y - 1 : y + 2, x - 1 : x + 2] = 255
            name = f"image{i:05d}_{subset}.{image_format}"
            Image.fromarray(img).save(os.path.join(base, "output", name))
            names.append(name)
            points.append(pts)
            sizes.append((w, h))
        points_a, sizes_a = np.array(points), np.array(sizes)
        with open(os.path.join(base, f"aflw_{subset}_images.txt"), "w") as f:
            f.write("\n".join(names) + "\n")
        savemat(os.path.join(base, f"aflw_{subset}_keypoints.mat"),
                {"gt": points_a[:, :, ::-1], "hw": sizes_a[:, ::-1]}, format="5")
        out[subset] = {"names": names, "points": points_a, "sizes": sizes_a}
    return out
