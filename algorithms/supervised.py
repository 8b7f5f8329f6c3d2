"""Supervised baseline: the task's loss on the labeled batch only (cross-entropy; squared error for regression)."""
from __future__ import annotations

import torch

from .base import Algorithm, Batch, LossTerms
from .registry import register
from .task import TASKS


@register
class Supervised(Algorithm):
    """C_T only; the unlabeled batch is never drawn (the lower anchor of every table)."""

    name = "supervised"
    paper_hps = 0  # tunable hyperparameters the papers count: none beyond training
    uses_unlabeled = False
    description = "labeled loss only (cross-entropy, or squared error for regression)"
    not_composable_because = "it has no unlabeled term to act on"
    tasks = TASKS

    def loss_terms(self, batch: Batch, step: int) -> LossTerms:
        x_l, y_l = self.labeled_views(batch.x_l, batch.y_l)
        loss_l = self.target_losses(self.model(x_l), y_l).mean()
        return LossTerms(loss_l, torch.zeros((), device=loss_l.device), 0.0)
