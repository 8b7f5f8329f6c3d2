"""A small, CPU-cheap CNN for 1x8x8 (sklearn digits) and 1x28x28
(Fashion-MNIST) images.  Not from a paper: a fast stand-in for CNN-13 /
WRN-28-2 in tests and small benchmarks.
"""
from __future__ import annotations

import torch
from torch import nn

from .base import FeatureClassifier, init_weights


class SmallCNN(FeatureClassifier):
    """``conv3x3(C,32)-LReLU-conv3x3(32,32)-LReLU-[maxpool2]-conv3x3(32,64)-LReLU
    -global-avg-pool-Linear(64, num_classes)``.

    All convolutions use padding 1 (size preserving).  The 2x2 max-pool is
    present only when ``pool=True`` (the registry sets it when H >= 16, i.e.
    for 28x28 inputs but not for 8x8 digits).

    ``batch_norm=False`` (registered as ``cnn_small``): no BatchNorm and no
    dropout, so the network is a deterministic function of (params, x), has no
    buffers, and data-parallel runs are exactly comparable with single-process
    runs.  ``batch_norm=True`` (``cnn_small_bn``): a ``BatchNorm2d`` after each
    conv (convs then have no bias), to exercise BN handling in the algorithms.

    Shapes: input ``[B, C, H, W]``, ``features`` ``[B, 64]``, logits
    ``[B, num_classes]``.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, pool: bool = True,
                 batch_norm: bool = False, width: int = 32,
                 negative_slope: float = 0.1, bn_momentum: float = 0.1) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.num_features = 2 * width

        def block(cin: int, cout: int) -> list[nn.Module]:
            layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1, bias=not batch_norm)]
            if batch_norm:
                layers.append(nn.BatchNorm2d(cout, momentum=bn_momentum))
            layers.append(nn.LeakyReLU(negative_slope, inplace=False))
            return layers

        layers = block(in_channels, width) + block(width, width)
        if pool:
            layers.append(nn.MaxPool2d(2))
        layers += block(width, 2 * width)
        self.body = nn.Sequential(*layers)
        self.classifier = nn.Linear(2 * width, num_classes)
        init_weights(self, negative_slope)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).mean(dim=(2, 3))
