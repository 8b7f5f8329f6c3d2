"""Meta-Semi as a meta rule (paper 002, Eq. 7-10, Alg. 1): 0/1 weights on a base method's
per-sample unlabeled losses from the sign of their meta-gradient on the labeled loss.

``BASE+meta_semi`` keeps the base's imputer, distance, mask and lambda(t) and replaces its
unlabeled mean by Meta-Semi's selected mean (the shared steps: :mod:`._reweight`). The
standalone ``meta_semi`` algorithm (:mod:`algorithms.meta_semi`, EMA soft pseudo-labels +
MixUp) remains the paper's full method.

Weights: w_j = 1 where d_j >= 0 (Eq. 9; by Proposition 1 the same sign holds for any number
M of virtual steps); loss = C_T + lambda(t) * sum_j w_j L_j / sum_j w_j over the *global*
unlabeled batch (0 when no w_j = 1). Normaliser: sum_j w_j over all samples, not over the
ones the base's mask keeps. A masked-out sample has grad L_j = 0, a tie that Eq. 9 keeps with
zero loss, so it counts in the denominator exactly as in the base's own mean (FixMatch and
Pseudo-Label divide by the whole unlabeled batch): with every w_j = 1 the rule's term is the
base's exactly, and a threshold base keeps its 1/B_u scaling early in training.

Diagnostics: ``kept_fraction`` (share of the samples the base uses, mask > 0, that Meta-Semi
keeps; 1.0 if the base uses none), ``kept_fraction_all`` (sum w_j / N, what the standalone
reports), ``mask_fraction``, ``meta_grad_norm`` = ||v||, ``assumption1_ratio``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..meta.rule import register_rule
from ..meta.weights import sign_weights
from ._reweight import ReweightHparams, ReweightRule


@dataclass
class MetaSemiRuleHparams(ReweightHparams):
    """See ReweightHparams. Meta-Semi adds no searchable hyperparameter to its base (002 Sec.
    3.2: the sign rule has none; its beta belongs to the standalone method's MixUp)."""


@register_rule
class MetaSemiRule(ReweightRule[MetaSemiRuleHparams]):
    """Meta-Semi's 0/1 sign weights on the base's unlabeled losses; see the module docstring."""

    name = "meta_semi"
    diagnostics = ('kept_fraction', 'kept_fraction_all')  # results columns diag_<name>
    description = "Meta-Semi: keep unlabeled samples whose meta-gradient on the labeled loss is <= 0"
    paper_hps = 0  # the sign rule has no hyperparameter (002 Sec. 3.2)
    tasks_note = ("Meta-Semi (002 Sec. 3) is a classification method, its meta-objective the labeled cross-entropy "
                  "with class pseudo-labels: classification only")

    def weights(self, d: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, dict]:
        comm = self.algo.ctx.comm
        w = sign_weights(d)
        used = (mask > 0).to(d.dtype)
        counts = comm.all_reduce_sum(torch.stack([w.sum(), (w * used).sum(), used.sum()]))
        kept, kept_used, n_used = counts.double().unbind()  # exact counts; double ratios as Python's
        n = w.shape[0] * comm.world_size
        diag = {"kept_fraction": torch.where(n_used > 0, kept_used / n_used, 1.0), "kept_fraction_all": kept / n}
        # sum_j w_j L_j / sum_j w_j over the global batch: this worker's share is scaled by world_size later
        return w / counts[0].clamp(min=1.0), diag
