"""Mean Teacher (Tarvainen & Valpola 2017)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F

from . import losses
from .base import BaseMethod
from .ema import EMATeacherMixin, WeightEMA
from .hparams import require
from .registry import register


@dataclass
class MeanTeacherHparams:
    """lambda_u: consistency weight on the class-summed squared error of softmaxes (the
    original code averages over classes, so its 100 on CIFAR-10 is 10 here); ema_decay: the
    teacher's weight-averaging decay (0.99 in the ramp-up phase of the original, 0.999 after;
    short budgets want the smaller one)."""

    lambda_u: float = field(default=10.0, metadata={"range": (1.0, 100.0), "scale": "log"})
    ema_decay: float = field(default=0.99, metadata={"range": (0.9, 0.999), "scale": "log"})
    rampup_fraction: float = 0.4
    rampup: Literal["linear", "sigmoid", "none"] = "sigmoid"

    def validate(self) -> None:
        require(self.lambda_u >= 0, "mean_teacher lambda_u must be >= 0")
        require(0.0 <= self.ema_decay < 1.0, "mean_teacher ema_decay must be in [0, 1)")
        require(0.0 <= self.rampup_fraction <= 1.0, "mean_teacher rampup_fraction must be in [0, 1]")


@register
class MeanTeacher(EMATeacherMixin, BaseMethod):
    """psi = softmax of the EMA teacher on a second augmented view; d = ||softmax(f(x)) - z||^2.

    The teacher is a separate copy whose weights are the EMA of the student's, updated after
    every optimizer step; it never receives gradients.
    """

    name = "mean_teacher"
    Hparams = MeanTeacherHparams
    description = "EMA teacher, squared error between student and teacher softmax"

    def __init__(self, model, hp, ctx) -> None:
        super().__init__(model, hp, ctx)
        self.teacher = WeightEMA(model, hp.ema_decay)

    def distance(self, logits_u: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return losses.softmax_squared_error(logits_u, targets)

    @torch.no_grad()
    def impute(self, x_u_teacher: torch.Tensor, logits_u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.teacher.model.train(self.model.training)
        targets = F.softmax(self.teacher.model(x_u_teacher), dim=1)
        return targets, torch.ones(targets.shape[0], device=targets.device, dtype=targets.dtype)
