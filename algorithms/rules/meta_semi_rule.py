"""Meta-Semi as a meta rule (paper 002, Eq. 7-10, Alg. 1): 0/1 weights on a base method's
per-sample unlabeled losses from the sign of their meta-gradient on the labeled loss.

``BASE+meta_semi`` keeps the base's imputer, distance, mask and lambda(t) and replaces its
unlabeled mean by Meta-Semi's selected mean. The standalone ``meta_semi`` algorithm
(:mod:`algorithms.meta_semi`, EMA soft pseudo-labels + MixUp) remains the paper's full method.

Per step:
1. ``s = algo.prepare(batch, step)``: the base's views, targets z (detached), mask, lambda(t)
   and the student's logits (the base's one forward, which is the only one that updates BN
   statistics);
2. v = grad_theta G, G = the base's C_T (``algo.labeled_losses``) averaged over this step's
   labeled batch, by a functional pass (``loss_gradient``), averaged over workers;
3. d_j = <grad_theta L_j, v> for L_j = mask_j * d(f_theta(x_u,j), z_j) with z_j fixed, one
   directional derivative over the unlabeled shard (``directional_derivatives``, ``jvp`` or
   ``fd``); by Eq. 10 the meta-gradient of w_j is -alpha_t d_j, and by Proposition 1 the
   same sign holds for any number M of virtual steps, so w_j = 1 where d_j >= 0 (Eq. 9);
4. loss = C_T + lambda(t) * sum_j w_j L_j / sum_j w_j, sums over the *global* unlabeled
   batch (0 when no w_j = 1), one optimizer step.

The base mask multiplies in (L_j = mask_j * d_j), so samples the base masks out weigh
nothing. Normaliser: sum_j w_j over all samples, not sum_j w_j * mask_j. A masked-out sample
has grad L_j = 0, a tie that Eq. 9 keeps (w_j = 1) with zero loss, so it counts in the
denominator exactly as it does in the base's own mean (FixMatch and Pseudo-Label divide by
the whole unlabeled batch). Consequences: with every w_j = 1 the rule's unlabeled term is the
base's term exactly, and a threshold base keeps its 1/B_u scaling instead of being amplified
by B_u / (number of confident samples) early in training.

Diagnostics (scalars, each step): ``kept_fraction`` = share of the samples the base uses
(mask > 0) that Meta-Semi keeps (1.0 if the base uses none), ``kept_fraction_all`` = sum w_j / N
(what the standalone reports), ``mask_fraction``, ``meta_grad_norm`` = ||v||, and
``assumption1_ratio`` = ||grad L_meta||^2 / ||v||^2 (002 Assumption 1, Fig. 2) with
L_meta the normalised weighted unlabeled loss (without lambda(t)) and v the labeled
gradient of this batch (single-batch estimates, where Fig. 2 uses Monte-Carlo averages of 500
samples). grad L_meta costs one extra backward, so it is computed only every ``diag_every``
steps (0: never, reported as 0.0); between computations the last value is reported, so the
engine's per-evaluation average stays an average of measured values.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch

from ..base import Batch, LossTerms, StepInputs
from ..hparams import require
from ..meta import directional_derivatives, loss_gradient
from ..meta.rule import MetaRule, register_rule
from ..meta_semi import sign_weights

if TYPE_CHECKING:
    from ..stepper import Stepper


def labeled_direction(algo, s: StepInputs, bn: str) -> dict[str, torch.Tensor]:
    """v = grad_theta of the base's C_T averaged over the *global* labeled batch (by name).

    The per-sample labeled losses are the base's own (``algo.labeled_losses``: hard labels,
    or MixMatch's mixed soft labels), evaluated by a functional pass in BN mode ``bn``.
    """
    def per_sample(logits: torch.Tensor, _y: torch.Tensor) -> torch.Tensor:
        return algo.labeled_losses(logits, s)

    v = loss_gradient(algo.model, per_sample, s.x_l, s.y_l, bn)
    comm = algo.ctx.comm
    return {n: comm.all_reduce_mean(t) for n, t in v.items()}


def unlabeled_directional(algo, s: StepInputs, v: dict[str, torch.Tensor], bn: str, method: str) -> torch.Tensor:
    """d_j = <grad_theta L_j, v> for L_j = mask_j * d(f_theta(x_u,j), z_j), z fixed: [b_u]."""
    def per_sample(logits: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return algo.unlabeled_losses(logits, s, targets=z)

    return directional_derivatives(algo.model, per_sample, s.x_u, s.targets, v, bn, method)


def squared_norm(tensors) -> float:
    return float(sum((t.detach().double() ** 2).sum() for t in tensors))


class ReweightRule(MetaRule):
    """Shared step of the per-sample reweighting rules (Meta-Semi, Learning to Reweight).

    Subclasses implement :meth:`weights`: from this worker's directional derivatives d [b_u]
    and the base mask [b_u], the weights w [b_u] such that the unlabeled term of this worker
    is ``(w * L).sum() * world_size`` (its share of the global weighted loss), plus
    diagnostics. Gradients never flow through w (it is computed from detached quantities).
    """

    diagnostics = ("meta_grad_norm", "mask_fraction", "assumption1_ratio")

    def __init__(self, algo, hp) -> None:
        super().__init__(algo, hp)
        self._last_ratio = 0.0

    def weights(self, d: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError  # abstract

    def meta_weights(self, s: StepInputs) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor], dict[str, float]]:
        """(w [b_u], d [b_u], v by name, diagnostics) for the step inputs ``s``."""
        v = labeled_direction(self.algo, s, self.hp.meta_bn)
        d = unlabeled_directional(self.algo, s, v, self.hp.meta_bn, self.hp.meta_method)
        w, diag = self.weights(d, s.mask)
        diag["meta_grad_norm"] = math.sqrt(squared_norm(v.values()))
        return w.detach(), d, v, diag

    def loss_terms(self, batch: Batch, step: int) -> tuple[LossTerms, dict[str, torch.Tensor]]:
        """The composed loss terms (labeled: the base's C_T; unlabeled: the weighted term
        without lambda(t); weight: lambda(t)) and the labeled direction v."""
        algo = self.algo
        s = algo.prepare(batch, step)
        w, _, v, diag = self.meta_weights(s)
        loss_l = algo.labeled_losses(s.logits_l, s).mean()
        per_u = algo.unlabeled_losses(s.logits_u, s)
        loss_u = (w * per_u).sum() * algo.ctx.comm.world_size
        diag["mask_fraction"] = float(algo.ctx.comm.all_reduce_mean(s.mask.float().mean()))
        return LossTerms(loss_l, loss_u, s.weight, diag), v

    def assumption1_ratio(self, loss_u: torch.Tensor, v: dict[str, torch.Tensor]) -> float:
        """||grad L_meta||^2 / ||v||^2 with grad L_meta averaged over workers (one extra backward)."""
        comm = self.algo.ctx.comm
        params = [p for p in self.algo.model.parameters() if p.requires_grad]
        if not loss_u.requires_grad:
            return 0.0
        grads = torch.autograd.grad(loss_u, params, retain_graph=True, allow_unused=True)
        flat = torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params)])
        g2 = squared_norm([comm.all_reduce_mean(flat)])
        return g2 / max(squared_norm(v.values()), 1e-30)

    def train_step(self, batch: Batch, step: int, stepper: "Stepper") -> dict[str, float]:
        terms, v = self.loss_terms(batch, step)
        every = self.hp.diag_every
        if every > 0 and step % every == 0:
            self._last_ratio = self.assumption1_ratio(terms.unlabeled, v)
        loss = terms.total()
        stepper.step(loss)
        self.algo.after_step(step)
        out = {"loss": float(loss.detach()), "loss_labeled": float(terms.labeled.detach()),
               "loss_unlabeled": float(terms.unlabeled.detach()), "unlabeled_weight": terms.weight,
               "assumption1_ratio": self._last_ratio}
        out.update(terms.diagnostics)
        return out


def _common_validate(hp, rule: str) -> None:
    require(hp.meta_method in ("jvp", "fd"), f"{rule} meta_method must be jvp or fd")
    require(hp.meta_bn in ("train", "eval"), f"{rule} meta_bn must be train or eval")
    require(hp.diag_every >= 0, f"{rule} diag_every must be >= 0")


@dataclass
class MetaSemiRuleHparams:
    """meta_method: ``jvp`` (exact directional derivative) or ``fd`` (central difference,
    eps = 0.01 / ||v||); meta_bn: BatchNorm mode of the meta passes (train: batch statistics,
    eval: stored statistics; neither updates them); diag_every: steps between computations of
    the Assumption-1 ratio (one extra backward each; 0 = never). Meta-Semi adds no searchable
    hyperparameter to its base (002 Sec. 3.2: the sign rule has none; its beta belongs to the
    standalone method's MixUp)."""

    meta_method: Literal["jvp", "fd"] = "jvp"
    meta_bn: Literal["train", "eval"] = "train"
    diag_every: int = 50

    def validate(self) -> None:
        _common_validate(self, "meta_semi")


@register_rule
class MetaSemiRule(ReweightRule):
    """Meta-Semi's 0/1 sign weights on the base's unlabeled losses; see the module docstring."""

    name = "meta_semi"
    diagnostics = ('kept_fraction', 'kept_fraction_all')  # results columns diag_<name>
    Hparams = MetaSemiRuleHparams
    description = "Meta-Semi: keep unlabeled samples whose meta-gradient on the labeled loss is <= 0"

    def weights(self, d: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        comm = self.algo.ctx.comm
        w = sign_weights(d)
        used = (mask > 0).to(d.dtype)
        kept, kept_used, n_used = comm.all_reduce_sum(torch.stack([w.sum(), (w * used).sum(), used.sum()])).tolist()
        n = w.shape[0] * comm.world_size
        diag = {"kept_fraction": kept_used / n_used if n_used > 0 else 1.0, "kept_fraction_all": kept / n}
        # sum_j w_j L_j / sum_j w_j over the global batch: this worker's share is scaled by world_size later
        return w / max(kept, 1.0), diag

