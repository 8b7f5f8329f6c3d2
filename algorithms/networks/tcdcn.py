"""TCDCN (Zhang et al., 2014) as used for AFLW facial-landmark regression by
Learning to Impute (paper 001, Sec. 5 Experiment 1 and App. A.1, Fig. 4),
following the official L2I code (docs/methods.md, "What the official code does")."""
from __future__ import annotations

import torch
from torch import nn

from .base import FeatureClassifier, init_weights


def tcdcn_spatial(size: int) -> int:
    """Spatial size after the conv/pool stack for an input of side ``size``.

    conv5 (valid) -> pool2 -> conv5 -> pool2 -> conv3 -> pool2 -> conv3
    (60 -> 56 -> 28 -> 24 -> 12 -> 10 -> 5 -> 3).  Max-pools floor.
    """
    s = (size - 4) // 2
    s = (s - 4) // 2
    s = (s - 2) // 2
    return s - 2


class TCDCN(FeatureClassifier):
    """TCDCN landmark regressor.

    ::

        conv5x5 20 (valid) + Hardtanh -> maxpool 2x2
        conv5x5 48 (valid) + Hardtanh -> maxpool 2x2
        conv3x3 64 (valid) + Hardtanh -> maxpool 2x2
        conv3x3 80 (valid) + Hardtanh
        flatten (80 x 3 x 3 = 720) -> Linear(720, 256)   (no activation)
        -> Linear(256, num_classes)

    The 256-d output of the first fully connected layer (no activation, as
    the official code) is ``features``; ``classifier`` is the final
    ``Linear(256, num_classes)``.  For AFLW ``num_classes = 10`` =
    5 landmarks x (x, y): the "logits" are the regressed coordinates (it is a
    regression head; the name ``classifier`` is kept for the shared
    interface, e.g. the last-layer approximation of L2I's Eq. 6).

    Shapes: input ``[B, C, H, W]`` with the natural ``[B, 1, 60, 60]``
    (grey faces).  Other sizes >= 44 are accepted; the first Linear then has
    ``80 * h' * w'`` inputs with ``h' = tcdcn_spatial(H)``.

    Parameters for 1x60x60 and 10 outputs: 285,586
    (convs 520 + 24,048 + 27,712 + 46,160, Linear 184,576 + 2,570).

    Deviations / choices: convolutions have biases (no BatchNorm), Hardtanh
    in [-1, 1] as the official L2I code (the original TCDCN paper uses
    absolute tanh); initialisation is the shared
    :func:`~algorithms.networks.base.init_weights`.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10,
                 input_hw: tuple[int, int] = (60, 60)) -> None:
        super().__init__()
        h, w = (tcdcn_spatial(s) for s in input_hw)
        if h < 1 or w < 1:
            raise ValueError(f"TCDCN needs inputs of at least 44x44, got {input_hw}")
        self.num_classes = num_classes
        self.num_features = 256
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 20, 5), nn.Hardtanh(), nn.MaxPool2d(2, 2),
            nn.Conv2d(20, 48, 5), nn.Hardtanh(), nn.MaxPool2d(2, 2),
            nn.Conv2d(48, 64, 3), nn.Hardtanh(), nn.MaxPool2d(2, 2),
            nn.Conv2d(64, 80, 3), nn.Hardtanh(),
        )
        self.fc = nn.Linear(80 * h * w, 256)
        self.classifier = nn.Linear(256, num_classes)
        init_weights(self, negative_slope=0.0)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x).flatten(1))
