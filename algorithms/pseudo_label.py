"""Pseudo-Label (Lee 2013): the model's own argmax as a hard target for unlabeled data."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch

from . import losses
from .base import BaseMethod
from .hparams import require
from .registry import register


@dataclass
class PseudoLabelHparams:
    """lambda_u: weight of the unlabeled term after ramp-up; threshold: keep a pseudo-label
    only if its softmax confidence is at least this (0 = Lee's original, every sample; 0.95
    as in Oliver et al. 2018); ramp-up of lambda over ``rampup_fraction`` of training."""

    lambda_u: float = field(default=1.0, metadata={"range": (0.1, 10.0), "scale": "log"})
    threshold: float = field(default=0.95, metadata={"range": (0.5, 0.99), "scale": "linear"})
    rampup_fraction: float = 0.4
    rampup: Literal["linear", "sigmoid", "none"] = "linear"

    def validate(self) -> None:
        require(self.lambda_u >= 0, "pseudo_label lambda_u must be >= 0")
        require(0.0 <= self.threshold < 1.0, "pseudo_label threshold must be in [0, 1)")
        require(0.0 <= self.rampup_fraction <= 1.0, "pseudo_label rampup_fraction must be in [0, 1]")


@register
class PseudoLabel(BaseMethod[PseudoLabelHparams]):
    """psi = one-hot argmax of f_theta(x_u) (same view, no gradient), masked by confidence;
    d = cross-entropy."""

    name = "pseudo_label"
    paper_hps = 2  # tunable hyperparameters the papers count: threshold, lambda_u
    needs_teacher_view = False
    description = "hard pseudo-labels from the model's own confident predictions"

    def impute(self, x_u_teacher, logits_u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return losses.confident_one_hot(logits_u, self.hp.threshold)
