"""ResNet-26 2x96d with shake-shake regularisation (Gastaldi, 2017).

Backbone of Meta-Gradient SSL (paper 003, Table 2: "26-layer ResNet with the
shake-shake regularization (Gastaldi, 2017)"; the paper gives no width, the
"2x96d" comes from Gastaldi's CIFAR model and from the Mean Teacher /
fastSWA / official Meta-Gradient code, which all use 96 base channels).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import FeatureClassifier, init_weights


class ShakeShakeMix(torch.autograd.Function):
    """``alpha * a + (1 - alpha) * b`` forward, ``beta`` / ``1 - beta`` backward.

    ``alpha`` and ``beta`` are tensors broadcastable to ``a`` (one value per
    sample, ``[B, 1, 1, 1]``), drawn by the caller, never differentiated.
    The backward is written with ordinary differentiable ops, so double
    backward works; ``jvp`` (forward mode, ``torch.func.jvp``) is the true
    directional derivative of the forward map (it uses ``alpha``: the
    "backward shake" is a backward-mode-only perturbation).
    """

    @staticmethod
    def forward(a: torch.Tensor, b: torch.Tensor, alpha: torch.Tensor,
                beta: torch.Tensor) -> torch.Tensor:
        return alpha * a + (1 - alpha) * b

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        _, _, alpha, beta = inputs
        ctx.save_for_backward(alpha, beta)
        ctx.save_for_forward(alpha)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        alpha, beta = ctx.saved_tensors
        return grad * beta, grad * (1 - beta), None, None

    @staticmethod
    def jvp(ctx, ta, tb, _talpha, _tbeta):
        (alpha,) = ctx.saved_tensors
        ta = torch.zeros_like(tb) if ta is None else ta
        tb = torch.zeros_like(ta) if tb is None else tb
        return alpha * ta + (1 - alpha) * tb


def shake_shake(a: torch.Tensor, b: torch.Tensor, training: bool) -> torch.Tensor:
    """Shake-Shake-Image mix of two branch outputs.

    Training: forward coefficient ``alpha ~ U(0, 1)`` per sample, backward
    coefficient ``beta ~ U(0, 1)`` per sample, independent of ``alpha``
    ("Shake-Shake" in Gastaldi's notation).  Evaluation: ``0.5 * (a + b)``
    (deterministic, plain autograd).
    """
    if not training:
        return 0.5 * (a + b)
    shape = (a.shape[0],) + (1,) * (a.dim() - 1)
    alpha = torch.rand(shape, dtype=a.dtype, device=a.device)
    beta = torch.rand(shape, dtype=a.dtype, device=a.device)
    return ShakeShakeMix.apply(a, b, alpha, beta)


class ShakeBranch(nn.Sequential):
    """ReLU - conv3x3(stride) - BN - ReLU - conv3x3 - BN (one residual branch)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=False),
            nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(cout),
        )


class ShakeShortcut(nn.Module):
    """Gastaldi's projection shortcut when the width (or resolution) changes.

    ReLU, then two paths concatenated along channels: (1) 1x1 average pool with
    stride ``stride`` (i.e. subsampling) + conv1x1 to ``cout // 2``; (2) the
    same on the input shifted by one pixel (``x[..., 1:, 1:]`` zero-padded at
    the bottom/right); then BatchNorm.  Parameters: ``cin * cout + 2 * cout``.
    """

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        if cout % 2:
            raise ValueError(f"shortcut width must be even, got {cout}")
        self.stride = stride
        self.conv1 = nn.Conv2d(cin, cout // 2, 1, bias=False)
        self.conv2 = nn.Conv2d(cin, cout // 2, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        s = self.stride
        y1 = self.conv1(x[:, :, ::s, ::s])
        shifted = F.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))
        y2 = self.conv2(shifted[:, :, ::s, ::s])
        return self.bn(torch.cat([y1, y2], dim=1))


class ShakeBlock(nn.Module):
    """``shortcut(x) + shake_shake(branch1(x), branch2(x))`` (no ReLU after the sum)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.branch1 = ShakeBranch(cin, cout, stride)
        self.branch2 = ShakeBranch(cin, cout, stride)
        self.shortcut = (nn.Identity() if cin == cout and stride == 1
                         else ShakeShortcut(cin, cout, stride))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + shake_shake(self.branch1(x), self.branch2(x), self.training)


class ShakeShakeResNet(FeatureClassifier):
    """Shake-Shake ResNet-``depth`` ``2x{width}d`` (Gastaldi 2017, CIFAR model).

    ::

        conv3x3(C, 16) + BN
        stage 1: n blocks, width w,  stride 1
        stage 2: n blocks, width 2w, stride 2
        stage 3: n blocks, width 4w, stride 2
        ReLU -> global average pool -> Linear(4w, num_classes)

    with ``n = (depth - 2) / 6`` (4 for depth 26; each block has two 2-conv
    branches) and ``w = 96`` for "2x96d" (widths 96/192/384).  See
    :func:`shake_shake` for the branch mixing (train: random per-sample
    forward alpha, independent backward beta; eval: 0.5/0.5).

    Shapes: input ``[B, C, H, W]`` (``[B, 3, 32, 32]``: 32 -> 32 -> 16 -> 8),
    ``features`` ``[B, 4w]`` (384), logits ``[B, num_classes]``.

    Parameters for 3x32x32 inputs and 10 classes: 26,192,922 (Gastaldi's
    Table 1: 26.2M for 26 2x96d; hand count in the tests).

    Deviations / choices:
      * global average pooling is adaptive (identical to the fixed 8x8 pool
        for 32x32 inputs);
      * initialisation is :func:`~algorithms.networks.base.init_weights`
        (Kaiming-normal fan_out for convs as fb.resnet.torch, Xavier-normal
        for the Linear);
      * the official Meta-Gradient SSL code (Sakura03/SemiMeta ``model.py``,
        a copy of Mean Teacher's ``cifar_shakeshake26``) differs in small
        ways: no BN after the stem conv, no ReLU before the average pool,
        stage-1 shortcut a plain conv1x1 + BN, and its stride-2 shortcuts
        ("shift_conv") take the two 2x2-subsampled phases, ReLU, then a
        grouped conv1x1 *with bias* + BN; it draws beta inside backward.
        Its count is 26,193,466 for 10 classes (hand count; +544 = biases
        of the shift convs minus the stem BN).  We implement Gastaldi's
        model as described in paper 003's citation.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 10, depth: int = 26,
                 width: int = 96) -> None:
        super().__init__()
        if (depth - 2) % 6 != 0:
            raise ValueError(f"shake-shake ResNet depth must be 6n+2, got {depth}")
        n = (depth - 2) // 6
        widths = [width, 2 * width, 4 * width]
        self.num_classes = num_classes
        self.num_features = widths[2]
        self.depth, self.width = depth, width
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16))
        stages = []
        cin = 16
        for i, w in enumerate(widths):
            blocks = []
            for j in range(n):
                blocks.append(ShakeBlock(cin, w, 2 if (i > 0 and j == 0) else 1))
                cin = w
            stages.append(nn.Sequential(*blocks))
        self.stage1, self.stage2, self.stage3 = stages
        self.classifier = nn.Linear(widths[2], num_classes)
        init_weights(self, negative_slope=0.0)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        out = self.stage3(self.stage2(self.stage1(self.stem(x))))
        return F.relu(out).mean(dim=(2, 3))
