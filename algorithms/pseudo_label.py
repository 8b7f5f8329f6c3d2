"""Pseudo-Label (Lee 2013): the model's own argmax as a hard target for unlabeled data.

Regression (L2I 001 App. A.1, AFLW): "we firstly crop an image from the original image by moving the
cropping window a random number of pixels. We then estimate the location of landmarks on the augmented
image and subtract the number of moving pixels, resulting in the pseudo label for the original image. We
then apply MSE to the prediction of the original image and the pseudo labels". So psi = the model's own
prediction (no gradient) on a shifted view, carried back to the un-augmented image by the base's
``prepare`` (the shift subtracted), and d = the task's squared error against the prediction on the
un-augmented image. No confidence mask: ``threshold`` has no meaning there and is not used. (The
official L2I code's student sees a second shifted view instead, the pseudo-label moved into its frame.)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch

from . import losses
from .base import BaseMethod
from .hparams import require
from .registry import register
from .task import TASKS


@dataclass
class PseudoLabelHparams:
    """lambda_u: weight of the unlabeled term after ramp-up; threshold: keep a pseudo-label
    only if its softmax confidence is at least this (0 = Lee's original, every sample; 0.95
    as in Oliver et al. 2018; classification only); ramp-up of lambda over ``rampup_fraction`` of
    training."""

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
    d = cross-entropy. Regression: psi = f_theta on a shifted view, shift subtracted; d = squared
    error against f_theta on the un-augmented image (see the module docstring)."""

    name = "pseudo_label"
    paper_hps = 2  # tunable hyperparameters the papers count: threshold, lambda_u
    needs_teacher_view = False
    regression_student_view = "original"
    description = "hard pseudo-labels from the model's own confident predictions"
    tasks = TASKS

    def impute(self, x_u_teacher, logits_u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x_u_teacher is None:  # targets invariant to the view: the student's own logits
            return losses.confident_one_hot(logits_u, self.hp.threshold)
        with torch.no_grad():  # regression: the prediction on the shifted view is the pseudo-label
            out = self.model(x_u_teacher)
        return out, torch.ones(out.shape[0], device=out.device, dtype=out.dtype)
