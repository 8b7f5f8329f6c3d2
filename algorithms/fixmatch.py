"""FixMatch (Sohn et al., NeurIPS 2020, "FixMatch: Simplifying Semi-Supervised Learning with
Consistency and Confidence")."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch

from . import losses
from .base import Batch, BaseMethod, StepInputs
from .hparams import require
from .registry import register


@dataclass
class FixMatchHparams:
    """threshold: confidence tau above which a weak-view pseudo-label is kept (0.95 in the
    paper); lambda_u: weight of the unlabeled cross-entropy (1 in the paper); no ramp-up in
    the paper (``rampup`` "none", ``rampup_fraction`` 0), kept switchable for short budgets."""

    threshold: float = field(default=0.95, metadata={"range": (0.5, 0.99), "scale": "linear"})
    lambda_u: float = field(default=1.0, metadata={"range": (0.1, 10.0), "scale": "log"})
    rampup_fraction: float = field(default=0.0, metadata={"range": (0.0, 1.0), "scale": "linear"})
    rampup: Literal["linear", "sigmoid", "none"] = "none"

    def validate(self) -> None:
        require(0.0 <= self.threshold < 1.0, "fixmatch threshold must be in [0, 1)")
        require(self.lambda_u >= 0, "fixmatch lambda_u must be >= 0")
        require(0.0 <= self.rampup_fraction <= 1.0, "fixmatch rampup_fraction must be in [0, 1]")


@register
class FixMatch(BaseMethod[FixMatchHparams]):
    """psi = one-hot argmax of softmax(f_theta(weak(x_u))) (no gradient), masked where its
    maximum is below ``threshold``; d = cross-entropy on the STRONG view strong(x_u) (RandAugment
    + Cutout for images, ``ctx.strong_augment``); lambda(t) = lambda_u, constant by default.

    Loss (paper Eq. 2-4): CE(labeled weak view) + lambda_u * 1/(mu B) sum_b 1[max q_b >= tau]
    H(argmax q_b, f(strong(u_b))): the masked cross-entropy is averaged over ALL unlabeled
    samples, masked ones included.

    Choices: one forward over [labeled, weak, strong] with the weak logits detached, as the
    official code and USB do (BatchNorm sees the whole batch); ``impute`` receives the weak
    view's logits (the teacher view of this method is the model itself on the weak view).
    Generator draws per step: weak(x_l), weak(x_u), strong(x_u), all on the global batch.
    """

    name = "fixmatch"
    paper_hps = 2  # tunable hyperparameters the papers count: tau, lambda_u
    needs_teacher_view = False
    description = "FixMatch: confident weak-view pseudo-labels, cross-entropy on the strong view"

    def impute(self, x_u_teacher, logits_u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``logits_u``: logits of the WEAK view. One-hot argmax targets and the confidence mask."""
        return losses.confident_one_hot(logits_u, self.hp.threshold)

    def prepare(self, batch: Batch, step: int) -> StepInputs:
        """Weak labeled view, weak and strong unlabeled views (global draws, then shards); the
        student's x_u_student / logits_u are those of the strong view, the targets come from the weak."""
        comm = self.ctx.comm
        x_l = self.views(batch.x_l)
        y_l = comm.shard(batch.y_l)
        x_u_weak = self.views(batch.x_u)
        x_u_strong = self.strong_views(batch.x_u)
        n_l, n_u = x_l.shape[0], x_u_weak.shape[0]
        logits = self.model(torch.cat([x_l, x_u_weak, x_u_strong]))
        logits_l, logits_weak, logits_strong = logits[:n_l], logits[n_l:n_l + n_u], logits[n_l + n_u:]
        targets, mask = self.impute(None, logits_weak.detach())
        return StepInputs(x_l, y_l, x_u_strong, targets.detach(), mask.detach(), self.unlabeled_weight(step),
                          logits_l, logits_strong, x_u_teacher=x_u_weak)
