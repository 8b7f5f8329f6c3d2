"""What the per-sample reweighting rules share (Meta-Semi, Learning to Reweight; not a rule).

Per step, on the base's StepInputs ``s`` (the base's one forward is the only one that
updates BN statistics):

1. v = grad_theta G, G = the base's C_T (``labeled_losses``) averaged over this step's global
   labeled batch, by a functional pass (``global_loss_gradient``);
2. d_j = <grad_theta L_j, v> for L_j = mask_j * d(f_theta(x_u,j), z_j) with z_j fixed, one
   directional derivative over the unlabeled shard (``directional_derivatives``, ``jvp`` or
   ``fd``): by 002 Eq. 10 the meta-gradient of a weight w_j is -alpha_t d_j;
3. the subclass turns d into weights (:meth:`ReweightRule.weights`);
4. loss = C_T + lambda(t) * sum_j w_j L_j over the global unlabeled batch, one optimizer step.

Gradients never flow through w (it is computed from detached quantities). The base mask
multiplies in (L_j = mask_j * d_j), so samples the base masks out weigh nothing.

``assumption1_ratio`` = ||grad L_meta||^2 / ||v||^2 (002 Assumption 1, Fig. 2), L_meta the
weighted unlabeled loss (without lambda(t)): single-batch estimates, where Fig. 2 averages
500 samples. grad L_meta costs one extra backward, so it is computed every ``diag_every``
steps (0: never, reported as 0.0); between computations the last value is reported, so the
engine's per-evaluation average stays an average of measured values.

Passes beyond the base's step (the base's forward and backward, which the step reuses for the
weighted loss: no second training forward): v = grad G, a forward and backward over the
labeled batch; d over the unlabeled batch, two forwards (``fd``) or one forward-mode pass
(``jvp``). That is the floor (``floor_passes``): v cannot come from the base's backward, which
is of C_T + lambda C_U, nor from its forward when BatchNorm normalises x_l together with x_u;
and Eq. 10's derivative needs the perturbed forwards (the central difference, not the
one-sided one that would reuse the base's forward at theta, is what ``fd`` means here).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, TypeVar

import torch

from ..base import Batch, LossTerms, StepInputs
from ..hparams import method_field, require
from ..meta import directional_derivatives, global_loss_gradient
from ..meta.functional import has_batchnorm, squared_norm
from ..meta.rule import LossRule, RuleHost, StepInfo


@dataclass
class ReweightHparams:
    """meta_method: ``jvp`` (exact directional derivative) or ``fd`` (central difference,
    eps = 0.01 / ||v||); meta_bn: BatchNorm mode of the meta passes (train: batch statistics,
    eval: stored statistics; neither updates them); diag_every: steps between computations of
    the Assumption-1 ratio (one extra backward each; 0 = never)."""

    meta_method: Literal["jvp", "fd"] = method_field("jvp", {"jvp": "first", "fd": "first"})
    meta_bn: Literal["train", "eval"] = "train"
    diag_every: int = field(default=50)

    def validate(self) -> None:
        require(self.diag_every >= 0, "diag_every must be >= 0")


def labeled_direction(algo: RuleHost, s: StepInputs, bn: str) -> dict[str, torch.Tensor]:
    """v = grad_theta of the base's C_T averaged over the *global* labeled batch (by name).

    The per-sample labeled losses are the base's own (``algo.labeled_losses``: hard labels,
    or MixMatch's mixed soft labels), evaluated by a functional pass in BN mode ``bn``.
    """
    def per_sample(logits: torch.Tensor, _y: torch.Tensor) -> torch.Tensor:
        return algo.labeled_losses(logits, s)

    return global_loss_gradient(algo.model, per_sample, s.x_l, s.y_l, bn, algo.ctx.comm)


def unlabeled_directional(algo: RuleHost, s: StepInputs, v: dict[str, torch.Tensor], bn: str, method: str) -> torch.Tensor:
    """d_j = <grad_theta L_j, v> for L_j = mask_j * d(f_theta(x_u,j), z_j), z fixed: [b_u]."""
    def per_sample(logits: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return algo.unlabeled_losses(logits, s, targets=z)

    return directional_derivatives(algo.model, per_sample, s.x_u_student, s.targets, v, bn, method)


@dataclass
class Reweighting:
    """The meta step's result: weights w [b_u], directional derivatives d [b_u], v by name."""

    w: torch.Tensor
    d: torch.Tensor
    v: dict[str, torch.Tensor]
    diagnostics: dict


HP = TypeVar("HP", bound=ReweightHparams)


class ReweightRule(LossRule[HP]):
    """Shared steps of the reweighting rules; subclasses implement :meth:`weights`."""

    diagnostics = ("meta_grad_norm", "mask_fraction", "assumption1_ratio")
    floor_passes = {"fd": (("forward_backward", "labeled"), ("forward", "unlabeled"), ("forward", "unlabeled")),
                    "jvp": (("forward_backward", "labeled"), ("jvp", "unlabeled"))}

    def __init__(self, algo: RuleHost, hp: HP) -> None:
        super().__init__(algo, hp)
        self._last_ratio: torch.Tensor | float = 0.0

    def meta_step_reads_student(self) -> bool:
        # v and d are functional passes on s.x_l / s.x_u_student with s.targets, s.mask: no logits
        return self.hp.meta_bn == "eval" and has_batchnorm(self.algo.model)

    def weights(self, d: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """From this worker's directional derivatives d [b_u] and the base mask [b_u]: weights
        w [b_u] such that this worker's unlabeled term ``(w * L).sum() * world_size`` is its
        share of the global weighted loss, and diagnostics."""
        raise NotImplementedError  # abstract

    def meta_step(self, s: StepInputs, batch: Batch, info: StepInfo) -> Reweighting:
        v = labeled_direction(self.algo, s, self.hp.meta_bn)
        d = unlabeled_directional(self.algo, s, v, self.hp.meta_bn, self.hp.meta_method)
        w, diag = self.weights(d, s.mask)
        diag["meta_grad_norm"] = squared_norm(v.values()).sqrt()
        return Reweighting(w.detach(), d, v, diag)

    def loss_terms(self, s: StepInputs, meta: Reweighting, info: StepInfo) -> LossTerms:
        """Labeled: the base's C_T; unlabeled: the weighted term (without lambda(t)); weight: lambda(t)."""
        algo, comm = self.algo, self.algo.ctx.comm
        loss_l = algo.labeled_losses(s.logits_l, s).mean()
        loss_u = (meta.w * algo.unlabeled_losses(s.logits_u, s)).sum() * comm.world_size
        diag = dict(meta.diagnostics, mask_fraction=comm.all_reduce_mean(s.mask.float().mean()))
        every = self.hp.diag_every
        if every > 0 and info.step % every == 0:
            self._last_ratio = self.assumption1_ratio(loss_u, meta.v)
        diag["assumption1_ratio"] = self._last_ratio
        return LossTerms(loss_l, loss_u, s.weight, diag)

    def state_dict(self) -> dict:
        # the last measured ratio travels with a checkpoint, so a resume between diagnostics steps reports as before
        return {**super().state_dict(), "last_ratio": self._last_ratio}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self._last_ratio = state.get("last_ratio", self._last_ratio)

    def assumption1_ratio(self, loss_u: torch.Tensor, v: dict[str, torch.Tensor]) -> torch.Tensor | float:
        """||grad L_meta||^2 / ||v||^2 with grad L_meta averaged over workers (one extra backward)."""
        comm = self.algo.ctx.comm
        params = [p for p in self.algo.model.parameters() if p.requires_grad]
        if not loss_u.requires_grad:
            return 0.0
        grads = torch.autograd.grad(loss_u, params, retain_graph=True, allow_unused=True)
        flat = torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params)])
        return squared_norm([comm.all_reduce_mean(flat)]) / squared_norm(v.values()).clamp(min=1e-30)
