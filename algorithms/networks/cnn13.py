"""The 13-layer "Conv-Large" CNN (CNN-13) and its regularised variants.

Architecture of Laine & Aila (2017) / Tarvainen & Valpola (2017), as used by
Learning to Impute (paper 000, Appendix A.2 and Fig. 4), Meta-Semi (paper 002,
Appendix D, which follows ICT and removes the input Gaussian noise layer and
the dropout layers) and Meta-Gradient SSL (paper 003, "Conv-Large").  002 App.
D keeps noise and dropout for the baselines whose papers use them ("Other
methods use these techniques if mentioned in their original papers"), hence
the named variants registered in :mod:`algorithms.networks`:

==================== ========================================================
``cnn13``            no input noise, no dropout (002 App. D / ICT)
``cnn13_dropout``    Dropout(0.5) after both max-pools (000 Fig. 4; VAT)
``cnn13_dropout2d``  Dropout2d(0.5) after both max-pools (Meta-Gradient
                     SSL's official ConvLarge)
``cnn13_noise_dropout`` Gaussian input noise (std 0.15) + Dropout(0.5)
                     (Laine & Aila's Pi / TE, Mean Teacher's ConvNet)
==================== ========================================================
"""
from __future__ import annotations

import torch
from torch import nn

from .base import FeatureClassifier, init_weights


class GaussianNoise(nn.Module):
    """x + N(0, std^2) elementwise in training mode, identity in eval mode (Laine & Aila's
    input layer). Draws from torch's global generator, which the engine seeds per run.
    Shape-preserving: [B, ...] -> [B, ...]."""

    def __init__(self, std: float) -> None:
        super().__init__()
        if std < 0:
            raise ValueError(f"noise std must be >= 0, got {std}")
        self.std = std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.std == 0:
            return x
        return x + self.std * torch.randn_like(x)

    def extra_repr(self) -> str:
        return f"std={self.std}"


class CNN13(FeatureClassifier):
    """CNN-13 ("Conv-Large").

    ::

        3 x [conv3x3 128 (pad 1) + BN + LReLU(0.1)] -> maxpool 2x2 -> (dropout)
        3 x [conv3x3 256 (pad 1) + BN + LReLU(0.1)] -> maxpool 2x2 -> (dropout)
        conv3x3 512 (valid) + BN + LReLU
        conv1x1 256 + BN + LReLU
        conv1x1 128 + BN + LReLU
        global average pool -> Linear(128, num_classes)

    Shapes: input ``[B, C, H, W]`` (``[B, 3, 32, 32]`` for CIFAR/SVHN; any
    H, W >= 28 is accepted), spatial size 32 -> 16 -> 8 -> 6 (valid conv),
    ``features`` ``[B, 128]``, logits ``[B, num_classes]``.

    Convolutions have no bias (each is followed by BatchNorm).  Parameters for
    3x32x32 inputs and 10 classes: 3,121,802 (see tests for the hand count).

    Deviations / choices:
      * no input Gaussian-noise layer and ``dropout=0.0`` by default, as in
        Meta-Semi Appendix D ("we remove the Gaussian noise layer and the
        dropout layer", following ICT).  ``dropout > 0`` inserts
        ``nn.Dropout(dropout)`` (``dropout_kind="channel"``: ``nn.Dropout2d``,
        whole feature maps) after each max-pool (Mean Teacher used 0.5);
        ``noise_std > 0`` adds :class:`GaussianNoise` on the input (0.15 in
        Laine & Aila and Mean Teacher);
      * plain BatchNorm instead of Mean Teacher's weight normalisation; paper
        000 says it applies BN "on each convolutional and fully connected
        layer": we do not put BN on the final Linear (the official
        Meta-Gradient code's ConvLarge does not either);
      * ``bn_momentum`` is PyTorch's convention (0.1 = 1 - 0.9 decay).
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 10, dropout: float = 0.0,
                 negative_slope: float = 0.1, bn_momentum: float = 0.1, noise_std: float = 0.0,
                 dropout_kind: str = "element") -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if dropout_kind not in ("element", "channel"):
            raise ValueError(f"dropout_kind must be 'element' or 'channel', got {dropout_kind!r}")
        self.num_classes = num_classes
        self.num_features = 128

        def cbr(cin: int, cout: int, k: int, pad: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, k, padding=pad, bias=False),
                    nn.BatchNorm2d(cout, momentum=bn_momentum),
                    nn.LeakyReLU(negative_slope, inplace=False)]

        def drop() -> nn.Module:
            if dropout == 0:
                return nn.Identity()
            return nn.Dropout2d(dropout) if dropout_kind == "channel" else nn.Dropout(dropout)

        self.noise = GaussianNoise(noise_std) if noise_std > 0 else nn.Identity()
        self.body = nn.Sequential(
            *cbr(in_channels, 128, 3, 1), *cbr(128, 128, 3, 1), *cbr(128, 128, 3, 1),
            nn.MaxPool2d(2, stride=2), drop(),
            *cbr(128, 256, 3, 1), *cbr(256, 256, 3, 1), *cbr(256, 256, 3, 1),
            nn.MaxPool2d(2, stride=2), drop(),
            *cbr(256, 512, 3, 0), *cbr(512, 256, 1, 0), *cbr(256, 128, 1, 0),
        )
        self.classifier = nn.Linear(128, num_classes)
        init_weights(self, negative_slope)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.noise(x)).mean(dim=(2, 3))
