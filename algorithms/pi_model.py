"""Pi-model (Laine & Aila 2017, "Temporal Ensembling for Semi-Supervised Learning", Sec. 2.1)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F

from . import losses
from .base import BaseMethod
from .hparams import require
from .registry import register


@dataclass
class PiModelHparams:
    """lambda_u: consistency weight w_max on the class-SUMMED squared error of softmaxes.

    The paper (and its code) averages the squared error over the C classes and uses
    w_max = 100 for the Pi-model, so 100 / C = 10 here for C = 10 (the same convention as
    ``mean_teacher``). The original code also multiplies w_max by M / N (labeled / all training
    inputs); that data-dependent factor is not applied here, tune lambda_u instead.
    rampup: Gaussian ``sigmoid`` ramp exp(-5 (1 - t)^2) over ``rampup_fraction`` of training
    (the paper ramps over the first 80 of 300 epochs; 0.4 as in this suite's other methods).
    """

    lambda_u: float = field(default=10.0, metadata={"range": (0.1, 100.0), "scale": "log"})
    rampup_fraction: float = field(default=0.4, metadata={"range": (0.0, 0.8), "scale": "linear"})
    rampup: Literal["linear", "sigmoid", "none"] = "sigmoid"

    def validate(self) -> None:
        require(self.lambda_u >= 0, "pi_model lambda_u must be >= 0")
        require(0.0 <= self.rampup_fraction <= 1.0, "pi_model rampup_fraction must be in [0, 1]")


@register
class PiModel(BaseMethod[PiModelHparams]):
    """psi = softmax(f_theta(T'(x_u))) on a second, independently augmented view (same weights,
    no gradient); d = ||softmax(f_theta(T(x_u))) - z||^2 summed over classes; lambda(t) =
    lambda_u * exp(-5 (1 - t)^2) ramp-up.

    Choices where the paper is ambiguous: the paper's loss ||z_i - z~_i||^2 lets gradients
    flow through both evaluations; here the second view is a fixed target (stop-gradient, as
    in Oliver et al. 2018 and the imputer/distance view of L2I, docs/methods.md). Both
    forwards run in the model's current (train) mode, so BatchNorm sees both views and dropout
    differs between them, as in the paper.
    """

    name = "pi_model"
    paper_hps = 1  # tunable hyperparameters the papers count: w_max
    needs_teacher_view = True
    description = "Pi-model: squared error between softmaxes of two augmented views"

    def distance(self, logits_u: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return losses.softmax_squared_error(logits_u, targets)

    @torch.no_grad()
    def impute(self, x_u_teacher: torch.Tensor, logits_u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        targets = F.softmax(self.model(x_u_teacher), dim=1)
        return targets, torch.ones(targets.shape[0], device=targets.device, dtype=targets.dtype)
