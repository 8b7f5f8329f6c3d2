"""Wide-ResNet-28-k as used by Oliver et al. (2018) / MixMatch (Berthelot et
al., 2019), and hence by Learning to Impute (paper 000 Table 2, paper 001) and
Meta-Semi (paper 002, WRN-28).
"""
from __future__ import annotations

import torch
from torch import nn

from .base import FeatureClassifier, init_weights


class BasicBlock(nn.Module):
    """Pre-activation basic block: BN-LReLU-conv3x3-BN-LReLU-conv3x3 + shortcut.

    As in the reference TensorFlow MixMatch / Oliver et al. code
    (``residual()`` in ``libml/models.py``): conv1 always sees the
    pre-activated input; when the number of channels changes the shortcut is a
    1x1 conv (stride ``stride``), applied to the pre-activated input in the
    first block (``activate_before_residual``) and to the raw input otherwise.
    (The popular PyTorch port feeds conv1 the raw input in the stride-2
    transition blocks, leaving their bn1 unused; same parameter count.)

    The activations are in place, on the fresh output of their BatchNorm, which
    nothing else reads (BatchNorm's backward needs its input, LeakyReLU's its
    output): the same values and gradients as out of place (also under
    ``torch.func.jvp`` and double backward, tested), one activation tensor less
    per layer to allocate, write and keep for the backward (USB's WRN does the
    same; ``docs/performance.md``). Residual addition is out of place.
    """

    def __init__(self, cin: int, cout: int, stride: int, negative_slope: float,
                 bn_momentum: float, activate_before_residual: bool = False) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin, momentum=bn_momentum)
        self.act1 = nn.LeakyReLU(negative_slope, inplace=True)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout, momentum=bn_momentum)
        self.act2 = nn.LeakyReLU(negative_slope, inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
        self.equal_in_out = cin == cout and stride == 1
        self.shortcut = None if self.equal_in_out else nn.Conv2d(
            cin, cout, 1, stride=stride, padding=0, bias=False)
        self.activate_before_residual = activate_before_residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.act1(self.bn1(x))
        out = self.conv2(self.act2(self.bn2(self.conv1(pre))))
        if self.equal_in_out:
            return x + out
        src = pre if self.activate_before_residual else x
        return self.shortcut(src) + out


class WideResNet(FeatureClassifier):
    """WRN-``depth``-``width`` (pre-activation, MixMatch variant).

    ::

        conv3x3(C, 16)
        group 1: n blocks, 16*w channels, stride 1 (first block activates before residual)
        group 2: n blocks, 32*w channels, stride 2
        group 3: n blocks, 64*w channels, stride 2
        BN -> LReLU(0.1) -> global average pool -> Linear(64*w, num_classes)

    with ``n = (depth - 4) / 6`` (4 for depth 28).  For ``width=2``: channels
    16/32/64/128; BN momentum 0.001 (PyTorch convention, i.e. running-stat
    decay 0.999, as the official L2I / MixMatch code); LeakyReLU slope 0.1.

    Shapes: input ``[B, C, H, W]`` (``[B, 3, 32, 32]``: 32 -> 32 -> 16 -> 8),
    ``features`` ``[B, 64*w]``, logits ``[B, num_classes]``.

    Parameter counts for 3x32x32 inputs and 10 classes:
    WRN-28-2 = 1,467,610 (the "~1.47M" of Oliver et al. / MixMatch);
    WRN-28-8 = 23,354,842.

    Deviations: global average pooling is adaptive (mean over H, W) instead
    of the fixed 8x8 pool of the reference code -- identical for 32x32 inputs,
    and it also admits other sizes; no dropout (drop rate 0 in MixMatch).
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 10, depth: int = 28,
                 width: int = 2, negative_slope: float = 0.1,
                 bn_momentum: float = 0.001) -> None:
        super().__init__()
        if (depth - 4) % 6 != 0:
            raise ValueError(f"WideResNet depth must be 6n+4, got {depth}")
        n = (depth - 4) // 6
        channels = [16, 16 * width, 32 * width, 64 * width]
        self.num_classes = num_classes
        self.num_features = channels[3]
        self.depth, self.width = depth, width
        self.conv1 = nn.Conv2d(in_channels, channels[0], 3, padding=1, bias=False)

        def group(cin: int, cout: int, stride: int, abr: bool) -> nn.Sequential:
            return nn.Sequential(*[
                BasicBlock(cin if i == 0 else cout, cout, stride if i == 0 else 1,
                           negative_slope, bn_momentum, abr and i == 0)
                for i in range(n)])

        self.block1 = group(channels[0], channels[1], 1, True)
        self.block2 = group(channels[1], channels[2], 2, False)
        self.block3 = group(channels[2], channels[3], 2, False)
        self.bn = nn.BatchNorm2d(channels[3], momentum=bn_momentum)
        self.act = nn.LeakyReLU(negative_slope, inplace=True)  # on the fresh BN output
        self.classifier = nn.Linear(channels[3], num_classes)
        init_weights(self, negative_slope)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        return self.act(self.bn(out)).mean(dim=(2, 3))
