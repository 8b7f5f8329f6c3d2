"""Learning to Reweight (Ren, Zeng, Yang & Urtasun, ICML 2018) as a meta rule on any composable
base: their weights on the base's own pseudo-labels and per-sample losses.

Not 002's baseline: 002 App. D kept Meta-Semi's pseudo-labels and MixUp ("we retain our
approach of generating pseudo-labeled samples, but use their reweighting strategy"), which is
the standalone ``meta_semi_l2rw`` (:mod:`algorithms.meta_semi_l2rw`).

Ren et al. take one virtual SGD step on sum_j eps_j l_j at eps = 0 and set
w_j = max(-dG(theta_1)/d eps_j, 0) = max(alpha <grad G, grad l_j>, 0), normalised to sum 1
over the batch, gradients stopped through w (their Eq. 3-4, Alg. 1); the step size alpha > 0
cancels in the normalisation. Here l_j = L_j is the base's per-sample unlabeled loss with its
imputed targets fixed, and <grad G, grad L_j> the shared directional derivative
(:mod:`._reweight`).

G: Ren et al. evaluate the meta-gradient on a small *clean validation* batch; in SSL the clean
labeled data are the labeled batch, so G = the base's C_T on this step's labeled batch, the
same G as the ``meta_semi`` rule, and no hold-out batch is drawn (the labeled batch is also in
C_T, unlike Ren et al.'s validation set: a deviation).

w_j = max(d_j, 0) / sum_k max(d_k, 0) over the global unlabeled batch; if every d_k <= 0 all
w_j = 0 and the step has no unlabeled term (Ren et al.'s code divides by sum + (sum == 0)).

Diagnostics: ``positive_fraction`` (share of samples with d_j > 0), ``weight_entropy``
(-sum_j w_j log w_j, nats; log N for uniform weights), ``ess_fraction`` = (1 / sum_j w_j^2) / N
(Kish effective sample size over the global batch size; 0 when all weights are 0),
``meta_grad_norm`` = ||v||, ``assumption1_ratio`` (L_meta = sum_j w_j L_j).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..meta.rule import register_rule
from ..meta.weights import positive_part_weights
from ..task import TASKS
from ._reweight import ReweightHparams, ReweightRule


@dataclass
class L2RWHparams(ReweightHparams):
    """See ReweightHparams. Ren et al. add no hyperparameter beyond the meta step size, which
    cancels in the normalisation."""


def l2rw_weights(d: torch.Tensor) -> torch.Tensor:
    """Single-process reference: max(d, 0) / sum max(d, 0) (all zeros if the sum is 0). [N] -> [N]."""
    r = d.clamp(min=0)
    s = r.sum()
    return r / s if s > 0 else torch.zeros_like(r)


@register_rule
class LearningToReweight(ReweightRule[L2RWHparams]):
    """Learning to Reweight's normalised nonnegative weights; see the module docstring."""

    name = "l2rw"
    diagnostics = ('positive_fraction', 'weight_entropy', 'ess_fraction')  # results columns diag_<name>
    description = "Learning to Reweight (SSL): weights max(<grad G, grad L_j>, 0), normalised to sum 1"
    paper_hps = 0  # the weights are normalised, so the virtual step size cancels
    # per-sample weights of the base's own losses: nothing in them is specific to classes
    tasks = TASKS

    def weights(self, d: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, dict]:
        del mask  # masked-out samples already have d_j = 0
        comm = self.algo.ctx.comm
        r = positive_part_weights(d)
        r_log_r = torch.where(r > 0, r * torch.log(torch.where(r > 0, r, torch.ones_like(r))), torch.zeros_like(r))
        total, sq, rlr, pos = comm.all_reduce_sum(
            torch.stack([r.sum(), (r * r).sum(), r_log_r.sum(), (r > 0).to(r.dtype).sum()]).double()).unbind()
        n = r.shape[0] * comm.world_size
        # All on the device (the step reads nothing); a zero sum gives zero weights and statistics.
        some = total > 0
        safe = torch.where(some, total, 1.0)
        # with p_j = r_j / S: H = log S - sum r log r / S, sum p^2 = sum r^2 / S^2 (one all-reduce)
        diag = {"positive_fraction": pos / n, "weight_entropy": torch.where(some, torch.log(safe) - rlr / safe, 0.0),
                "ess_fraction": torch.where(some, safe * safe / torch.where(some, sq, 1.0) / n, 0.0)}
        return torch.where(some, r / safe, torch.zeros_like(r)), diag
