"""ResNet-18 (He et al., 2016), torchvision layout, adapted to the
feature/classifier interface.  Backbone of Meta-Gradient SSL's ImageNet
experiment (paper 003, Table 3) and usable on small images with a CIFAR stem.
"""
from __future__ import annotations

import torch
from torch import nn

from .base import FeatureClassifier, init_weights

#: below this input height/width the CIFAR-style stem is used
SMALL_INPUT_HW = 64


class BasicBlock(nn.Module):
    """torchvision's ``BasicBlock`` (same parameter names), out-of-place.

    conv3x3(stride) - BN - ReLU - conv3x3 - BN, plus identity or
    ``downsample`` (conv1x1(stride) + BN), then ReLU.
    """

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=False)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ResNet18(FeatureClassifier):
    """ResNet-18 with ``features`` = the pooled 512-d vector.

    ::

        stem: ImageNet  conv7x7(C, 64, stride 2, pad 3) + BN + ReLU + maxpool3x3/2
              small     conv3x3(C, 64, stride 1, pad 1) + BN + ReLU (no max-pool)
        layer1..layer4: 2 BasicBlocks each, widths 64/128/256/512, strides 1/2/2/2
        global average pool -> [B, 512] = features
        classifier: Linear(512, num_classes)

    The registry (``build_network("resnet18", ...)``) chooses the stem from
    the input size: the CIFAR-style stem (``small_stem=True``) when
    ``min(H, W) < 64`` (the usual adaptation
    for 32x32 images, e.g. in the MixMatch/FixMatch-era code, since the
    ImageNet stem would reduce 32x32 to 8x8 before layer1), the ImageNet stem
    otherwise.  Parameter names equal torchvision's ``resnet18`` (with
    ``fc`` renamed ``classifier``), so its state dict loads with that rename
    when the ImageNet stem is used.

    Parameters: 11,689,512 for 1000 classes with the ImageNet stem (equal to
    ``torchvision.models.resnet18(num_classes=1000)``; "11.7M"); the 3x3
    stem has ``9 * 64 * C`` instead of ``49 * 64 * C`` stem weights
    (11,173,962 for 3x32x32, 10 classes).

    Deviations: all ReLUs and the residual additions are out-of-place (for
    ``torch.func``); initialisation is the shared
    :func:`~algorithms.networks.base.init_weights` (convs and BN as
    torchvision; the Linear is Xavier-normal instead of PyTorch's default
    uniform); no zero-init of the last BN of each block (torchvision's
    default is off as well).
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 1000,
                 small_stem: bool = False) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.num_features = 512
        self.small_stem = small_stem
        if small_stem:
            self.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=False)
        cin = 64
        for i, (w, s) in enumerate([(64, 1), (128, 2), (256, 2), (512, 2)], start=1):
            setattr(self, f"layer{i}", nn.Sequential(BasicBlock(cin, w, s), BasicBlock(w, w, 1)))
            cin = w
        self.classifier = nn.Linear(512, num_classes)
        init_weights(self, negative_slope=0.0)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        out = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return out.mean(dim=(2, 3))
