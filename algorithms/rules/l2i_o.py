"""L2I-O: Learning to Impute with the imputed labels as the model's output (000 option 2,
001 Sec. 4, Alg. 1, Eq. 4; Eq. 6 for ``meta_method = approx``).

One iteration (001 Alg. 1; the template runs steps 1 and 4 and the base's ``after_step``):

1. the base's own step on C_T + lambda C_U (lines 4-6) -> theta_hat, the lr schedule held;
2. re-impute with theta_hat: z(theta) = softmax(f_theta(x_z)), the *student's* output
   (line 7) on the meta step's imputing view (``l2i_inner_loss``: another weak view of the
   unlabeled batch, 001 App. A.2; or the base's imputer view). For bases whose psi is not
   differentiable (Pseudo-Label's and FixMatch's one-hot argmax, MixMatch's sharpening) this
   softmax is the "model output" imputation of 000 option 2; for Mean Teacher it is the
   student, not the EMA teacher (as the official code);
3. virtual step(s) theta* = theta_hat - eta * grad_theta(inner loss at fixed z) (line 9), the
   hold-out loss C_H(theta*) (line 10) and its meta-gradient along ``l2i_meta_path``
   (:mod:`algorithms.meta.label_gradient`): ``z`` through z only (001 Eq. 4, App. B; the
   official code), ``z_hessian`` z and the Hessian term, ``total`` the total derivative of
   000 Eq. 7. ``exact``: second order through the whole network; ``approx``: 001 Eq. 6, the
   virtual step on the last layer with frozen features (dz/dtheta stays exact for every
   parameter: one backward through z's forward), path ``z`` only;
4. a second optimizer step with that gradient (line 11; official: a second Adam step).

Passes of the meta step (besides C_H before and after, one hold-out forward each every
``diag_every`` steps): path ``z`` with one inner step: z's forward (no graph), the inner
forward and backward (no graph kept: theta* is a value), the hold-out forward and backward at
theta*, one forward-mode pass over the inner input (the mixed second derivative, forward over
reverse: :func:`~algorithms.meta.label_gradient.one_step_label_gradient`), then z's forward
and backward again (the pull-back). These are its floor (``floor_passes``): the definition
needs theta* (the inner gradient), grad C_H(theta*), the derivative of the inner z-gradient
along it (one forward-mode pass; a double backward costs more) and (dz/dtheta)^T; z's value
is needed before the virtual step and its pull-back after the hold-out gradient, and keeping
its graph across the meta passes would hold the unlabeled batch's activations through all of
them (next to the inner forward's: against the peak memory target), so its forward is counted
twice. With more inner steps: the inner forward and a
backward with graph per step, the hold-out forward, a double backward to z; ``z_hessian`` /
``total``: z's forward with graph, the inner forward and backward with graph, the hold-out
forward, one double backward to the weights (no floor declared). ``approx``: z's forward with
graph (kept for the pull-back), two no-grad feature forwards (inner input, hold-out batch),
the classifier's virtual step (last layer only: negligible), and the pull-back's backward.
approx's floor: the two feature forwards and z's forward and backward; then the second update
is an optimizer step on those gradients (no further pass).

Diagnostics: holdout_loss_before / holdout_loss_after (C_H at theta_hat and after the meta
step, 000 Fig. 2), holdout_loss_virtual (C_H(theta*), free), meta_grad_norm (norm of the
averaged meta-gradient).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from ..base import Batch, StepInputs
from ..hparams import method_field, require
from ..meta.functional import parameters_of
from ..meta.label_gradient import label_meta_gradient, output_and_pull_back, pull_back, unrolled_meta_gradient
from ..meta.rule import SecondUpdate, StepInfo, register_rule
from ._l2i_common import HoldoutPass, L2ICommonHparams, L2IRuleBase, MetaViews


@dataclass
class L2IOHparams(L2ICommonHparams):
    """L2I-O (000 option 2, 001 Alg. 1 / Eq. 4 / Eq. 6). meta_method: ``exact`` (second order
    through the whole network, the official code) or ``approx`` (001 Eq. 6: last layer only,
    features frozen; the journal's experiments). l2i_meta_path: which paths of
    dC_H(theta*(theta, z(theta)))/dtheta the meta-gradient takes: ``z`` (through the imputed
    labels only, 001 Eq. 4 and App. B, the official code), ``z_hessian`` (and the Hessian
    term of the virtual step), ``total`` (and the identity theta -> theta*: the total
    derivative, 000 Eq. 7). Shared fields: see L2ICommonHparams."""

    renamed = {**L2ICommonHparams.renamed, "l2i_variant": "meta_method"}

    meta_method: Literal["exact", "approx"] = method_field("exact", {"exact": "second", "approx": "first"})
    l2i_meta_path: Literal["z", "z_hessian", "total"] = "z"

    def validate(self) -> None:
        super().validate()
        require(self.meta_method == "exact" or self.l2i_meta_path == "z",
                f"l2i_o meta_method approx (001 Eq. 6) differentiates through z only: l2i_meta_path "
                f"{self.l2i_meta_path!r} needs meta_method exact")


@dataclass
class L2IOMeta:
    hold: HoldoutPass
    grads: dict[str, torch.Tensor]
    c_h: torch.Tensor


@register_rule
class L2IO(L2IRuleBase[L2IOHparams]):
    """Meta-gradient of the hold-out loss through the imputed labels z(theta) (Eq. 4)."""

    name = "l2i_o"
    description = "L2I-O: hold-out meta-gradient through the model's imputed labels (second optimizer step)"
    paper_hps = 1  # 001 Sec. 5.1 tunes "inner, outer-loop learning rates": the outer one is every method's lr
    floor_passes = {"approx": (("forward", "inner"), ("forward", "holdout"), ("forward_backward", "unlabeled")),
                    "exact": (("forward", "unlabeled"), ("forward_backward", "inner"), ("forward_backward", "holdout"),
                              ("jvp", "inner"), ("forward_backward", "unlabeled"))}

    @classmethod
    def floor_for(cls, hp: L2IOHparams):
        if hp.meta_method == "exact" and hp.l2i_meta_path != "z":  # z_hessian / total: the double backward
            return None
        return super().floor_for(hp)

    def meta_gradients(self, s: StepInputs, views: MetaViews, x_h: torch.Tensor, y_h: torch.Tensor,
                       inner_lr: float) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """dC_H(theta*(z(theta)))/dtheta along ``l2i_meta_path`` (Eq. 4 or Eq. 6 for ``z``) at
        the model's current weights, this worker's part (the stepper averages it); returns
        (grads by parameter name, C_H(theta*)). x_h [b_h, ...], y_h [b_h] this worker's hold-out
        shard; ``views`` the meta step's unlabeled inputs."""
        core, hp, params = self.core, self.hp, parameters_of(self.algo.model)
        z_fn = core.model_output(views)
        if hp.l2i_meta_path != "z":
            return unrolled_meta_gradient(params, z_fn, core.inner_loss(s, views), core.holdout_loss(x_h, y_h),
                                          inner_lr, hp.l2i_inner_steps, identity=hp.l2i_meta_path == "total",
                                          comm=core.comm)
        if hp.meta_method == "approx":
            # z's forward keeps its graph for the pull-back (one forward, not two): it is small next
            # to approx's other passes, unlike exact's double-backward graph that it would add to
            z, pull = output_and_pull_back(params, z_fn)
            g_z, c_h = core.approx_label_gradient(s, views, z, x_h, y_h, inner_lr)
            return pull(g_z), c_h
        with torch.no_grad():
            z = z_fn(params)
        g_z, c_h = label_meta_gradient(params, z, core.inner_loss(s, views), core.holdout_loss(x_h, y_h), inner_lr,
                                       hp.l2i_inner_steps, comm=core.comm)
        return pull_back(params, z_fn, g_z), c_h

    def meta_step(self, s: StepInputs, batch: Batch, info: StepInfo) -> L2IOMeta:
        hold = self.holdout_pass(batch, info.step)
        views = self.core.meta_views(s, batch)
        grads, c_h = self.meta_gradients(s, views, hold.x_h, hold.y_h, self.hp.l2i_inner_lr_scale * info.lr)
        return L2IOMeta(hold, grads, c_h)

    def second_update(self, s: StepInputs, meta: L2IOMeta, info: StepInfo) -> SecondUpdate:
        return SecondUpdate(grads=meta.grads)

    def after_update(self, s, meta: L2IOMeta, update, applied_grad_norm, info) -> dict:
        return {"meta_grad_norm": applied_grad_norm(), **self.holdout_diagnostics(meta.hold, meta.c_h)}
