"""Supervised baseline: cross-entropy on the labeled batch only."""
from __future__ import annotations

import torch

from . import losses
from .base import Algorithm, Batch, LossTerms
from .registry import register


@register
class Supervised(Algorithm):
    """C_T only; the unlabeled batch is never drawn (the lower anchor of every table)."""

    name = "supervised"
    paper_hps = 0  # tunable hyperparameters the papers count: none beyond training
    uses_unlabeled = False
    description = "labeled cross-entropy only"
    not_composable_because = "it has no unlabeled term to act on"

    def loss_terms(self, batch: Batch, step: int) -> LossTerms:
        x_l = self.views(batch.x_l)
        y_l = self.ctx.comm.shard(batch.y_l)
        loss_l = losses.hard_cross_entropy(self.model(x_l), y_l).mean()
        return LossTerms(loss_l, torch.zeros((), device=loss_l.device), 0.0)
