"""Shared base class for every network of :mod:`algorithms.networks`.

Contract relied on by the meta-learning code (e.g. L2I's last-layer
approximation, journal version Eq. 6): every network exposes

* ``features(x) -> Tensor[B, F]`` -- the penultimate representation,
* ``classifier: nn.Linear`` mapping ``F -> num_classes``,
* ``forward(x) = classifier(features(x))`` -- logits ``[B, num_classes]``,
* ``num_features`` (F) and ``num_classes`` attributes.

In-place operations appear only where nothing else reads the overwritten
tensor (WRN's LeakyReLU on the fresh output of its BatchNorm), so
``torch.func.functional_call``, ``torch.func.jvp``/``vjp`` and double backward
work through every network (``tests/test_networks.py`` checks them on WRN too).
"""
from __future__ import annotations

import torch
from torch import nn


class FeatureClassifier(nn.Module):
    """Base class: ``forward(x) = self.classifier(self.features(x))``.

    Subclasses implement :meth:`features` and set ``self.classifier``
    (an ``nn.Linear``), ``self.num_features`` and ``self.num_classes``.
    """

    classifier: nn.Linear
    num_features: int
    num_classes: int
    #: None: float32 throughout; a dtype (torch.bfloat16): ``forward`` runs under autocast to it
    #: and returns float32 logits, so losses and their gradients' accumulation stay in float32.
    #: An instance attribute when set, so copies (EMA teachers) inherit it.
    autocast_dtype: torch.dtype | None = None

    def features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.autocast_dtype is None:
            return self.classifier(self.features(x))
        with torch.autocast(x.device.type, dtype=self.autocast_dtype):
            logits = self.classifier(self.features(x))
        return logits.float()


def init_weights(module: nn.Module, negative_slope: float = 0.1) -> None:
    """Standard initialisation used by all networks here.

    Conv2d: Kaiming normal (fan_out, leaky_relu gain with ``negative_slope``),
    Linear: Xavier normal, BatchNorm: weight 1; every bias 0.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, a=negative_slope, mode="fan_out",
                                    nonlinearity="leaky_relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.xavier_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            if m.weight is not None:
                nn.init.ones_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
