"""MixMatch (Berthelot et al., NeurIPS 2019, "MixMatch: A Holistic Approach to Semi-Supervised Learning").

Per iteration (Alg. 1 of the paper):
1. one weak augmentation of every labeled sample and K weak augmentations of every unlabeled one;
2. label guess q_b = Sharpen(1/K sum_k softmax(f(u_{b,k})), T), Sharpen(p, T)_i = p_i^(1/T) / sum_j p_j^(1/T),
   computed without gradient (Eq. 6-7);
3. W = Shuffle(Concat(X_hat, U_hat)) with X_hat = (augmented x, one-hot y) and U_hat = (each of
   the K views of u, q); X' = MixUp(X_hat, W[:|X|]), U' = MixUp(U_hat, W[|X|:]), where
   MixUp uses lam ~ Beta(alpha, alpha), lam' = max(lam, 1 - lam) (Eq. 8-11);
4. loss = L_X + lambda_U L_U, L_X = mean soft cross-entropy on X', L_U = 1/(C |U'|) sum ||q' - softmax(f(u'))||^2
   (Eq. 3-5; squared error averaged over classes, as in the paper and the official code).

Imputer/distance view (L2I journal Sec. 3; docs/methods.md): psi = sharpen(mean of K augmentations, T) + MixUp, d = squared
error of softmaxes (divided by C), lambda(t) = lambda_u * linear ramp-up.

Choices where the paper is ambiguous (or that data parallelism forces):
- Mixing W = Concat(X_hat, U_hat) with one permutation and one lam' per step and taking the first
  |X| rows as X' and the rest as U' is exactly MixUp(X_hat, W_perm[:|X|]), MixUp(U_hat, W_perm[|X|:])
  of Alg. 1 (one lambda per batch, as the official code does).
- Augmentations, lam, the permutation and MixUp are drawn on the GLOBAL batch from the shared
  generator ``ctx.generator``; the label guesses are computed on each worker's shard of every view
  and all-gathered, so every worker builds the same mixed batch, then takes its shard of X' and U'.
- The guesses use the model in whatever mode the engine set (train mode in training), as the
  official code (``training=True``); one forward over X' and U' together plays the part of the
  official code's interleaving (BatchNorm sees labeled and unlabeled samples in one batch).
- lambda_u defaults to 75, the paper's CIFAR-10 value (Sec. 4.1; 250 for SVHN); the paper ramps it
  linearly over its first 16k of ~1M steps, here over ``rampup_fraction`` of the run (0.4 by
  default: short budgets need a longer relative ramp).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F

from . import losses
from .base import BaseMethod, Batch, LossTerms, StepInputs
from .hparams import require
from .mixup import sample_beta
from .registry import register


def sharpen(p: torch.Tensor, temperature: float) -> torch.Tensor:
    """MixMatch Eq. 7: p_i^(1/T) / sum_j p_j^(1/T), row-wise. p [B, C] probabilities -> [B, C].

    Computed as softmax(log p / T) for numerical safety (identical in exact arithmetic).
    """
    return F.softmax(torch.log(p.clamp_min(torch.finfo(p.dtype).tiny)) / temperature, dim=1)


def mixmatch_squared_error(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """||softmax(logits) - targets||^2 / C per sample (MixMatch Eq. 5). [B, C], [B, C] -> [B]."""
    return losses.softmax_squared_error(logits, targets) / logits.shape[1]


@dataclass
class MixMatchHparams:
    """K: weak augmentations per unlabeled sample (2 in the paper); T: sharpening temperature
    (0.5); alpha: MixUp's Beta(alpha, alpha) (0.75); lambda_u: weight of the unlabeled squared
    error, averaged over classes as in the paper (75 for CIFAR-10, 250 for SVHN); ramp-up of
    lambda over ``rampup_fraction`` of training (the paper: linear over 16k steps)."""

    K: int = field(default=2, metadata={"range": (1, 4), "scale": "linear"})
    T: float = field(default=0.5, metadata={"range": (0.1, 1.0), "scale": "linear"})
    alpha: float = field(default=0.75, metadata={"range": (0.1, 1.0), "scale": "linear"})
    lambda_u: float = field(default=75.0, metadata={"range": (1.0, 300.0), "scale": "log"})
    rampup_fraction: float = field(default=0.4, metadata={"range": (0.0, 1.0), "scale": "linear"})
    rampup: Literal["linear", "sigmoid", "none"] = "linear"

    def validate(self) -> None:
        require(self.K >= 1, "mixmatch K must be >= 1")
        require(self.T > 0, "mixmatch T must be > 0")
        require(self.alpha >= 0, "mixmatch alpha must be >= 0 (0 = no MixUp)")
        require(self.lambda_u >= 0, "mixmatch lambda_u must be >= 0")
        require(0.0 <= self.rampup_fraction <= 1.0, "mixmatch rampup_fraction must be in [0, 1]")


@register
class MixMatch(BaseMethod[MixMatchHparams]):
    """MixMatch: psi = sharpen(mean softmax over K views, T), mixed by MixUp with labeled data;
    d = softmax squared error / C; lambda(t) = lambda_u * linear ramp-up. See the module docstring."""

    name = "mixmatch"
    diagnostics = ('mixup_lambda', 'guess_max_prob')  # results columns diag_<name>
    paper_hps = 4  # tunable hyperparameters the papers count: Meta-Semi Table 2
    description = "MixMatch: sharpened K-view label guesses, MixUp of labeled and unlabeled, squared error"

    def distance(self, logits_u: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return mixmatch_squared_error(logits_u, targets)

    @torch.no_grad()
    def guess_labels(self, u_views: list[torch.Tensor]) -> torch.Tensor:
        """Sharpened mean softmax over the K global views [B_u, ...] -> global guesses [B_u, C].

        Each worker runs the model on its shard of every view; the guesses are all-gathered.
        """
        comm = self.ctx.comm
        p = torch.stack([F.softmax(self.model(comm.shard(v)), dim=1) for v in u_views]).mean(dim=0)
        return comm.all_gather(sharpen(p, self.hp.T))

    def mixed_batches(self, batch: Batch) -> dict[str, object]:
        """The global MixMatch batch, identical on every worker.

        Returns x_l [B_l, ...] (augmented), u_views (K x [B_u, ...]), guess [B_u, C], inputs
        [B_l + K B_u, ...] and targets [B_l + K B_u, C] before mixing, lam (the Beta draw), lam'
        (= max(lam, 1 - lam)), perm, and x_mix / y_mix (the first B_l rows: X') and u_mix /
        u_targets (the rest: U').
        """
        g, c = self.ctx.generator, self.ctx.num_classes
        x_l = self.ctx.augment(batch.x_l, g)
        u_views = [self.ctx.augment(batch.x_u, g) for _ in range(self.hp.K)]
        guess = self.guess_labels(u_views).to(x_l.dtype)
        y_l = F.one_hot(batch.y_l, c).to(x_l.dtype)
        inputs = torch.cat([x_l, *u_views])
        targets = torch.cat([y_l, *([guess] * self.hp.K)])
        lam = sample_beta(self.hp.alpha, g)
        lam_p = max(lam, 1.0 - lam)
        perm = torch.randperm(inputs.shape[0], generator=g, device=g.device).to(inputs.device)
        mixed_x = lam_p * inputs + (1 - lam_p) * inputs[perm]
        mixed_y = lam_p * targets + (1 - lam_p) * targets[perm]
        n_l = x_l.shape[0]
        return dict(x_l=x_l, u_views=u_views, guess=guess, inputs=inputs, targets=targets, lam=lam,
                    lam_p=lam_p, perm=perm, x_mix=mixed_x[:n_l], y_mix=mixed_y[:n_l],
                    u_mix=mixed_x[n_l:], u_targets=mixed_y[n_l:])

    def prepare(self, batch: Batch, step: int) -> StepInputs:
        """This worker's shard of X' (labeled, soft targets y_l_soft) and U' (mixed inputs and
        mixed guesses as targets); meta rules see MixMatch through this. The imputer's view of
        a mixed sample is the mixed sample itself (``x_u_teacher`` None)."""
        comm = self.ctx.comm
        m = self.mixed_batches(batch)
        self._last_mix = m
        x_mix, y_mix, u_mix, u_targets = (comm.shard(m[k]) for k in ("x_mix", "y_mix", "u_mix", "u_targets"))
        logits = self.model(torch.cat([x_mix, u_mix]))
        n_l = x_mix.shape[0]
        ones = torch.ones(u_mix.shape[0], dtype=logits.dtype, device=logits.device)
        return StepInputs(x_mix, comm.shard(batch.y_l), u_mix, u_targets, ones, self.unlabeled_weight(step),
                          logits[:n_l], logits[n_l:], y_l_soft=y_mix)

    def loss_terms(self, batch: Batch, step: int) -> LossTerms:
        s = self.prepare(batch, step)
        m = self._last_mix
        # Every sample weighs the same in both means, so the local means are this worker's share.
        loss_l = self.labeled_losses(s.logits_l, s).mean()
        loss_u = self.unlabeled_losses(s.logits_u, s).mean()
        return LossTerms(loss_l, loss_u, s.weight,
                         {"mixup_lambda": m["lam_p"], "guess_max_prob": m["guess"].max(dim=1).values.mean().detach()})
