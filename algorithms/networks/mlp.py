"""Fully-connected networks for vector inputs ``[B, D]``.

* :class:`MLP242` -- the toy network of Learning to Impute (paper 000,
  Sec. 4 Experiment 1 / Fig. 1 and Appendix A.1): ``D -> 4 -> C`` with one
  leaky ReLU in between (D = 2, C = 2 for the two-circles problem).
* :class:`MLP` -- a slightly stronger toy baseline ``D -> 64 -> 64 -> C``.
"""
from __future__ import annotations

import torch
from torch import nn

from .base import FeatureClassifier, init_weights


class MLP242(FeatureClassifier):
    """The "2-4-2" toy network of paper 000 (Appendix A.1, Fig. 1).

    ``Linear(D, 4) -> LeakyReLU(negative_slope) -> Linear(4, num_classes)``.

    Shapes: input ``[B, D]`` (D = 2 in the paper), ``features`` ``[B, 4]``,
    output logits ``[B, num_classes]``.  With D = 2 and 2 classes it has
    exactly 2*4 + 4 + 4*2 + 2 = 22 parameters.

    Deviations from the paper:
      * the paper ends with a sigmoid (binary output); we return
        ``num_classes`` logits and the training code uses softmax
        cross-entropy, which for 2 classes is the same model family
        (a softmax over two logits is a sigmoid of their difference);
      * the paper does not give the leaky-ReLU slope; we use 0.1 (the slope
        paper 000 uses for its CNNs) -- configurable via ``negative_slope``.
    """

    def __init__(self, in_features: int = 2, num_classes: int = 2,
                 hidden: int = 4, negative_slope: float = 0.1) -> None:
        super().__init__()
        self.num_features = hidden
        self.num_classes = num_classes
        self.fc1 = nn.Linear(in_features, hidden)
        self.act = nn.LeakyReLU(negative_slope, inplace=False)
        self.classifier = nn.Linear(hidden, num_classes)
        init_weights(self, negative_slope)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.fc1(x.flatten(1)))


class MLP(FeatureClassifier):
    """Small MLP ``D -> 64 -> 64 -> num_classes`` with LeakyReLU(0.1).

    Not from a paper: a stronger toy baseline than :class:`MLP242` for vector
    data.  Shapes: input ``[B, D]``, ``features`` ``[B, 64]`` (activations of
    the second hidden layer), logits ``[B, num_classes]``.  No BatchNorm or
    dropout (deterministic, ``torch.func``-friendly).
    """

    def __init__(self, in_features: int, num_classes: int, hidden: int = 64,
                 negative_slope: float = 0.1) -> None:
        super().__init__()
        self.num_features = hidden
        self.num_classes = num_classes
        self.body = nn.Sequential(
            nn.Linear(in_features, hidden),
            nn.LeakyReLU(negative_slope, inplace=False),
            nn.Linear(hidden, hidden),
            nn.LeakyReLU(negative_slope, inplace=False),
        )
        self.classifier = nn.Linear(hidden, num_classes)
        init_weights(self, negative_slope)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.flatten(1))
