"""Supervised + MixUp (Zhang et al. 2018): the labeled-only baseline of Meta-Semi Table 1."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from . import losses
from .base import Algorithm, Batch, LossTerms
from .hparams import require
from .mixup import mixup
from .registry import register


@dataclass
class SupervisedMixupHparams:
    """alpha: MixUp's lambda ~ Beta(alpha, alpha); 1.0 is Zhang et al.'s CIFAR-10 setting
    (the Meta-Semi paper does not state the value of its baseline); 0 disables mixing."""

    alpha: float = field(default=1.0, metadata={"range": (0.1, 2.0), "scale": "log"})

    def validate(self) -> None:
        require(self.alpha >= 0, "supervised_mixup alpha must be >= 0")


@register
class SupervisedMixup(Algorithm[SupervisedMixupHparams]):
    """C_T on MixUp(X, Shuffle(X), lam) with one-hot labels mixed alike, soft cross-entropy;
    no unlabeled term (x_u is never read).

    The weakly augmented GLOBAL labeled batch is mixed with the shared generator (one lam and
    one permutation for the whole batch, as in Zhang et al. and Meta-Semi Eq. 12; lam is not
    folded to max(lam, 1 - lam)) and then sharded, so W workers compute what one worker does.
    """

    name = "supervised_mixup"
    diagnostics = ('mixup_lambda',)  # results columns diag_<name>
    paper_hps = 1  # tunable hyperparameters the papers count: alpha
    uses_unlabeled = False
    description = "labeled cross-entropy on MixUp of the labeled batch"
    not_composable_because = "it has no unlabeled term to act on"

    def mixed_batch(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, float, torch.Tensor]:
        """Global (x_mix [B_l, ...], y_mix [B_l, C], lam, perm [B_l]), identical on every worker."""
        g = self.ctx.generator
        x_l = self.ctx.augment(batch.x_l, g)
        y_l = F.one_hot(batch.y_l, self.ctx.num_classes).to(x_l.dtype)
        return mixup(x_l, y_l, self.hp.alpha, g)

    def loss_terms(self, batch: Batch, step: int) -> LossTerms:
        comm = self.ctx.comm
        x_mix, y_mix, lam, _ = self.mixed_batch(batch)
        x_mix, y_mix = comm.shard(x_mix), comm.shard(y_mix)
        loss_l = losses.soft_cross_entropy(self.model(x_mix), y_mix).mean()
        return LossTerms(loss_l, torch.zeros((), device=loss_l.device), 0.0, {"mixup_lambda": lam})
