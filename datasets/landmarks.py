"""The five-landmark target format (aflw, synthetic_landmarks) and the papers' landmark metric.

Targets are float tensors [N, K] with K = 10: (x0, y0, x1, y1, ..., x4, y4), in pixels of the input
image (x to the right, y down; pixel (row i, column j) is the point (x=j, y=i)). Landmark order is
MTFL/TCDCN's, the one the AFLW release of the papers uses: left eye centre, right eye centre, nose
tip, left mouth corner, right mouth corner (synthetic_landmarks: "left" is the image's left; aflw:
as the release stores them). The metric treats the two eyes alike, so their naming does not matter.

Metric (L2I 001 Sec. 5.2 and 000 Sec. 4.2, "mean error normalised by the inter-ocular distance as
in [TCDCN]"; the same computation as the official L2I code's ``evaluate``): per image, the mean
over the 5 landmarks of the Euclidean distance between prediction and ground truth, divided by the
distance between the ground-truth eye centres; the reported number is its mean over images, in %.
A failure is an image whose normalised error exceeds 10% (TCDCN's threshold, kept by the L2I code).
"""
from __future__ import annotations

import torch

LANDMARKS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
NUM_LANDMARKS = len(LANDMARKS)
TARGET_DIM = 2 * NUM_LANDMARKS
EYES = (0, 1)  # indices into LANDMARKS of the two points the inter-ocular distance joins
FAILURE_THRESHOLD_PCT = 10.0


def as_points(y: torch.Tensor) -> torch.Tensor:
    """Targets [N, 2L] (x0, y0, x1, y1, ...) -> points [N, L, 2] (a view, no copy)."""
    if y.dim() != 2 or y.shape[1] % 2:
        raise ValueError(f"landmark targets must be [N, 2L], got shape {tuple(y.shape)}")
    return y.view(y.shape[0], -1, 2)


def interocular_distance(target: torch.Tensor, eyes: tuple[int, int] = EYES) -> torch.Tensor:
    """Distance between the two eye landmarks of each ground truth [N, 2L] -> [N]."""
    p = as_points(target)
    return (p[:, eyes[0]] - p[:, eyes[1]]).norm(dim=-1)


def nme_per_sample(pred: torch.Tensor, target: torch.Tensor, eyes: tuple[int, int] = EYES) -> torch.Tensor:
    """Normalised mean error of each image in %: pred, target [N, 2L] -> [N].

    100 * mean_l ||pred_l - target_l|| / ||target_eye0 - target_eye1||. Raises ValueError (one line)
    on mismatched shapes or a ground truth whose eyes coincide (the error is undefined there).
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    iod = interocular_distance(target, eyes)
    if not bool((iod > 0).all()):
        raise ValueError(f"{int((iod <= 0).sum())} ground truth(s) with zero inter-ocular distance")
    dist = (as_points(pred) - as_points(target)).norm(dim=-1)  # [N, L]
    return 100.0 * dist.mean(dim=1) / iod


def nme(pred: torch.Tensor, target: torch.Tensor, eyes: tuple[int, int] = EYES) -> float:
    """The papers' metric: mean over images of :func:`nme_per_sample`, in % (pred, target [N, 2L])."""
    return float(nme_per_sample(pred, target, eyes).mean())


def failure_rate(pred: torch.Tensor, target: torch.Tensor, threshold_pct: float = FAILURE_THRESHOLD_PCT,
                 eyes: tuple[int, int] = EYES) -> float:
    """Share of images (in %) whose normalised error exceeds ``threshold_pct`` (pred, target [N, 2L])."""
    return 100.0 * float((nme_per_sample(pred, target, eyes) > threshold_pct).double().mean())
