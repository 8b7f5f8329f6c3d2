"""L2I-L: Learning to Impute with the imputed labels as learnable parameters (000 option 1,
Alg. 1; 001 Appendix B Eq. 10-11 and 14-15, Tables 9-10).

One iteration (the template runs steps 1 and 4 and the base's ``after_step``):

1. the base's own step on C_T + lambda C_U -> theta_hat (000 Alg. 1, first update);
2. labels z initialised at theta_hat (``l2i_label_init``): ``output`` = softmax of the
   student on the meta step's imputing view (000 Alg. 1 "re-estimate Z with the updated
   model"; the official code's logits from f(u2)), or ``psi`` = the base's own targets from
   step 1 (with ``l2i_inner_loss = base`` only: they belong to the base's own views);
3. one label step z <- z - eta_z * B_u * dC_H(theta*(z))/dz with
   theta* = theta_hat - eta_theta * grad_theta(inner loss at z) (000 Eq. 6, 001 Eq. 10);
   B_u (the global unlabeled batch) makes eta_z act on the per-sample meta-gradient, the
   quantity the papers' summed losses give, so eta_z does not depend on the batch size.
   The corrected rows are projected back onto the simplex (clamp at 0, renormalise; a row
   that would vanish keeps its old value): cross-entropy with negative targets is unbounded
   below (the official code updates logits instead, which stay valid by construction);
   regression targets need no projection (the base's ``project_targets``);
4. a second optimizer step on ``l2i_label_weight`` * C_U(corrected z) with the meta step's
   l_u on its student view (``mse_views``: the squared error, 000 App. A.2 and the official
   code, weight 1, no ramp; ``base``: the base's distance and mask).

``meta_method``: ``exact`` (second order through the virtual step, the definition) or the
first-order variants ``jvp`` / ``fd``. At first order (grad C_H evaluated at theta_hat
instead of theta*), with v = grad_theta C_H(theta_hat) (global),

    dC_H/dz_j ~= -K eta d/dz_j <v, grad_theta C_U(theta, z)>
              = -K eta (w m_j / B_u) (d^2 d / dz dl)(l_j, z_j) (J_j v),

where l_j = f_theta(x_j), J_j v the directional derivative of sample j's logits along v:
one call of the shared primitive ``directional_derivatives`` (with the logits as the
"per-sample loss", jvp or finite differences) plus a [b_u, C]-sized double backward
through the distance only. C_T drops out (it does not depend on z), but its samples stay in
the forward: l_j are the unlabeled rows of the same forward as the exact inner loss
(cat([x_l, x_u]) when C_T is in it), so that with train-mode BatchNorm the first-order
result is the eta -> 0 limit of the exact one (the gap is O(eta), tests/test_l2i_paths.py).

Passes beyond the base's step: ``exact`` with one inner step: z's forward, the inner forward
and backward (no graph kept: theta* is a value), the hold-out forward and backward at theta*
(v* = grad C_H(theta*)), one forward-mode pass over the inner input (forward over reverse,
:func:`~algorithms.meta.label_gradient.one_step_label_gradient`: exactly the second-order
derivative, without a double backward), and the label step below; with more inner steps, the
inner forward and a backward with graph per step, the hold-out forward, a double backward to
z (no floor declared); ``jvp``: z's forward (the labels'
initialisation), v = grad C_H (one forward and backward over the hold-out batch), one
forward-mode pass over the inner input (whose primal gives the logits l_j), a [b_u, C] double
backward through the distance only; ``fd``: the same with two perturbed forwards and one at
theta instead of the forward-mode pass; then the label step's training forward and backward
over the unlabeled batch (the second update that defines L2I: no base pass can stand in for
it, since it comes after the base's update). Those are the floor (``floor_passes``); C_H
before and after cost one hold-out forward each, every ``diag_every`` steps.

Diagnostics: holdout_loss_before / holdout_loss_after (C_H at theta_hat and after the label
step), holdout_loss_virtual (C_H(theta*), exact only), label_correction (mean over samples of
the L1 size of the change of z), meta_grad_norm (norm of the global dC_H/dz), loss_label_step.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch

from ..base import Batch, StepInputs
from ..hparams import method_field, require
from ..meta.functional import directional_derivatives, global_loss_gradient, parameters_of
from ..meta.label_gradient import label_meta_gradient
from ..meta.rule import SecondUpdate, StepInfo, register_rule
from ._l2i_common import HoldoutPass, L2ICommonHparams, L2IRuleBase, MetaViews


@dataclass
class L2ILHparams(L2ICommonHparams):
    """L2I-L (000 option 1; 001 Eq. 10/14, Tables 9-10; official code: k = 100, label lr 1.0,
    label-step weight 1). meta_method: ``exact`` (second order), ``jvp`` or ``fd`` (first
    order through the shared directional-derivative primitive); l2i_label_lr: eta_z, the step
    on the per-sample meta-gradient B_u dC_H/dz; l2i_label_init: ``output`` (student softmax
    on the imputing view at the updated weights) or ``psi`` (the base's targets; needs
    ``l2i_inner_loss = base``); l2i_label_weight: weight of the corrected-label step's C_U
    (no ramp)."""

    renamed = {**L2ICommonHparams.renamed, "l2i_l_method": "meta_method"}

    l2i_inner_lr_scale: float = field(default=100.0, metadata={"range": (1.0, 1000.0), "scale": "log"})
    meta_method: Literal["exact", "jvp", "fd"] = method_field("exact", {"exact": "second", "jvp": "first", "fd": "first"})
    l2i_label_lr: float = field(default=1.0, metadata={"range": (0.01, 100.0), "scale": "log"})
    l2i_label_init: Literal["output", "psi"] = "output"
    l2i_label_weight: float = field(default=1.0, metadata={"range": (0.1, 100.0), "scale": "log"})

    def validate(self) -> None:
        super().validate()
        require(self.l2i_label_lr >= 0, "l2i_label_lr must be >= 0")
        require(self.l2i_label_weight >= 0, "l2i_label_weight must be >= 0")
        require(self.l2i_label_init == "output" or self.l2i_inner_loss == "base",
                "l2i_label_init psi takes the base's targets, which belong to the base's own views: "
                "set l2i_inner_loss base (or l2i_label_init output)")


@dataclass
class L2ILMeta:
    hold: HoldoutPass
    views: MetaViews
    z0: torch.Tensor  # labels before the correction [b_u, C]
    z1: torch.Tensor  # after
    grad: torch.Tensor  # global dC_H/dz for this worker's rows
    c_h: torch.Tensor | None  # C_H(theta*), exact only


@register_rule
class L2IL(L2IRuleBase[L2ILHparams]):
    """Labels corrected by one step on the hold-out meta-gradient, then trained on."""

    name = "l2i_l"
    diagnostics = ('label_correction', 'loss_label_step')  # results columns diag_<name>
    description = "L2I-L: imputed labels corrected by the hold-out meta-gradient, then trained on"
    paper_hps = 2  # the inner (virtual-step) learning rate and the label learning rate
    floor_passes = {
        "jvp": (("forward", "unlabeled"), ("forward_backward", "holdout"), ("jvp", "inner"),
                ("forward_backward", "unlabeled")),
        "fd": (("forward", "unlabeled"), ("forward_backward", "holdout"), ("forward", "inner"), ("forward", "inner"),
               ("forward", "inner"), ("forward_backward", "unlabeled")),
        # exact = jvp's passes with v taken at theta* instead of theta_hat: one more inner forward and backward
        "exact": (("forward", "unlabeled"), ("forward_backward", "inner"), ("forward_backward", "holdout"),
                  ("jvp", "inner"), ("forward_backward", "unlabeled"))}

    def initial_labels(self, s: StepInputs, views: MetaViews) -> torch.Tensor:
        """z before correction [b_u, C] (detached)."""
        if self.hp.l2i_label_init == "psi":
            return s.targets.detach()
        with torch.no_grad():
            return self.core.model_output(views)(parameters_of(self.algo.model))

    def first_order_label_gradient(self, s: StepInputs, views: MetaViews, z: torch.Tensor, x_h: torch.Tensor,
                                   y_h: torch.Tensor, inner_lr: float) -> torch.Tensor:
        """-K eta d/dz <v, grad_theta(w C_U(theta, z))>, v = grad C_H(theta) averaged over
        workers; this worker's share (W * the global derivative, like the exact path)."""
        core, model, mode, comm = self.core, self.algo.model, self.hp.meta_bn, self.core.comm
        v = global_loss_gradient(model, lambda logits, y: core.holdout_criterion(logits, y), x_h, y_h, mode, comm)
        x = core.inner_input(s, views)  # the exact inner loss's forward: BatchNorm sees the same batch
        n_l = x.shape[0] - views.x_u.shape[0]
        # J_j v for every sample of that forward (the primitive with the logits as the per-sample
        # quantity), and the logits themselves: jvp's primal, so no extra forward (fd: one more)
        logits, jv = directional_derivatives(model, lambda logits, t: logits, x, x, v, mode, self.hp.meta_method,
                                             with_value=True)
        logits_u, jv = logits[n_l:], jv[n_l:]
        zz = z.detach().requires_grad_(True)
        l_u = logits_u.detach().requires_grad_(True)
        (dl,) = torch.autograd.grad(core.unlabeled_terms(l_u, s, zz).sum(), l_u, create_graph=True)
        inner = (dl * jv).sum() / z.shape[0]  # d/d eps of this worker's mean C_U along v
        (g,) = torch.autograd.grad(inner, zz, allow_unused=True)
        if g is None:
            return torch.zeros_like(z)
        return -self.hp.l2i_inner_steps * inner_lr * core.inner_weight(s) * g.detach()

    def label_gradient(self, s: StepInputs, views: MetaViews, z: torch.Tensor, x_h: torch.Tensor, y_h: torch.Tensor,
                       inner_lr: float) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Global dC_H(theta*(z))/dz for this worker's rows of z [b_u, C], and C_H(theta*)
        (None at first order)."""
        core, world = self.core, self.core.comm.world_size
        if self.hp.meta_method == "exact":
            g, c_h = label_meta_gradient(parameters_of(self.algo.model), z, core.inner_loss(s, views),
                                         core.holdout_loss(x_h, y_h), inner_lr, self.hp.l2i_inner_steps, comm=core.comm)
        else:
            g, c_h = self.first_order_label_gradient(s, views, z, x_h, y_h, inner_lr), None
        return g / world, c_h

    def corrected_labels(self, s: StepInputs, views: MetaViews, x_h: torch.Tensor, y_h: torch.Tensor, inner_lr: float
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(z before [b_u, C], z after, global dC_H/dz, C_H(theta*) or None)."""
        z0 = self.initial_labels(s, views)
        g, c_h = self.label_gradient(s, views, z0, x_h, y_h, inner_lr)
        b_u_global = z0.shape[0] * self.core.comm.world_size
        z1 = self.algo.project_targets(z0 - self.hp.l2i_label_lr * b_u_global * g, z0)
        return z0, z1, g, c_h

    def meta_step(self, s: StepInputs, batch: Batch, info: StepInfo) -> L2ILMeta:
        hold = self.holdout_pass(batch, info.step)
        views = self.core.meta_views(s, batch)
        z0, z1, g, c_h = self.corrected_labels(s, views, hold.x_h, hold.y_h, self.hp.l2i_inner_lr_scale * info.lr)
        return L2ILMeta(hold, views, z0, z1, g, c_h)

    def second_update(self, s: StepInputs, meta: L2ILMeta, info: StepInfo) -> SecondUpdate:
        """The step on the corrected labels: a training forward of the meta step's student view."""
        logits = self.algo.model(meta.views.x_u)
        return SecondUpdate(loss=self.hp.l2i_label_weight * self.core.unlabeled_terms(logits, s, meta.z1).mean())

    def after_update(self, s, meta: L2ILMeta, update, applied_grad_norm, info) -> dict:
        comm = self.core.comm
        return {"loss_label_step": comm.all_reduce_mean(update.loss.detach()),
                "label_correction": comm.all_reduce_mean((meta.z1 - meta.z0).abs().sum(dim=1).mean()),
                "meta_grad_norm": torch.sqrt(comm.all_reduce_sum((meta.grad.double() ** 2).sum())),
                **self.holdout_diagnostics(meta.hold, meta.c_h)}
