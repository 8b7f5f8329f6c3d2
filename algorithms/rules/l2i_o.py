"""L2I-O: Learning to Impute with the imputed labels as the model's output (000 option 2,
001 Sec. 4, Alg. 1, Eq. 4; Eq. 6 for ``approx``).

One iteration (001 Alg. 1):

1. the base's own step on C_T + lambda C_U (lines 4-6: a normal optimizer step) -> theta_hat;
2. re-impute with theta_hat: z(theta) = softmax(f_theta(x_u_impute or x_u)), the *student's*
   output on the imputer's view (line 7). For bases whose psi is not differentiable
   (Pseudo-Label's and FixMatch's one-hot argmax, MixMatch's sharpening) this softmax is the
   "model output" imputation of 000 option 2; for Mean Teacher it is the student on the
   teacher's view, not the EMA teacher (as the official code). The base's mask is kept;
3. virtual step(s) theta* = theta_hat - eta * grad_theta(inner loss at fixed z) (line 9), the
   hold-out loss C_H(theta*) (line 10) and dC_H/dtheta through z only (Eq. 4; see
   :mod:`._l2i_common` for exactly which paths are included), ``exact``: second order through
   the whole network; ``approx``: Eq. 6, the virtual step on the last layer with frozen
   features (dz/dtheta stays exact for every parameter: one backward through z's forward);
4. a second optimizer step with that gradient (line 11; official: a second Adam step).

The lr schedule advances once per iteration (the first step runs with it paused). The base's
``after_step`` (teacher EMA) runs once, after the meta step. Mean Teacher's fast-SWA bookkeeping
lives in its own ``train_step`` and does not run under a rule.

Diagnostics: holdout_loss_before / holdout_loss_after (C_H at theta_hat and after the meta
step, one forward each on the hold-out batch, 000 Fig. 2), holdout_loss_virtual (C_H(theta*),
free), meta_grad_norm (norm of the averaged meta-gradient).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from ..base import Batch, StepInputs
from ..meta.functional import parameters_of
from ..meta.rule import register_rule
from ._l2i_common import L2ICommonHparams, L2IRuleBase, grad_norm, label_meta_gradient, pull_back


@dataclass
class L2IOHparams(L2ICommonHparams):
    """L2I-O (000 option 2, 001 Alg. 1 / Eq. 4 / Eq. 6). l2i_variant: ``exact`` (second order
    through the whole network, the official code) or ``approx`` (001 Eq. 6: last layer only,
    features frozen; the journal's experiments). Shared fields: see L2ICommonHparams."""

    l2i_variant: Literal["exact", "approx"] = "exact"


@register_rule
class L2IO(L2IRuleBase):
    """Meta-gradient of the hold-out loss through the imputed labels z(theta) (Eq. 4)."""

    name = "l2i_o"
    Hparams = L2IOHparams
    description = "L2I-O: hold-out meta-gradient through the model's imputed labels (second optimizer step)"

    def meta_gradients(self, s: StepInputs, x_h: torch.Tensor, y_h: torch.Tensor,
                       inner_lr: float) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """dC_H(theta*(z(theta)))/dtheta through z (Eq. 4 or Eq. 6) at the model's current
        weights, this worker's part (the stepper averages it); returns (grads by parameter
        name, C_H(theta*)). x_h [b_h, ...], y_h [b_h] this worker's hold-out shard."""
        core, params = self.core, parameters_of(self.algo.model)
        z_fn = core.model_output(s)
        with torch.no_grad():
            z = z_fn(params)
        if self.hp.l2i_variant == "approx":
            g_z, c_h = core.approx_label_gradient(s, z, x_h, y_h, inner_lr)
        else:
            g_z, c_h = label_meta_gradient(params, z, core.inner_loss(s), core.holdout_loss(x_h, y_h), inner_lr,
                                           self.hp.l2i_inner_steps, comm=core.comm)
        return pull_back(params, z_fn, g_z), c_h

    def train_step(self, batch: Batch, step: int, stepper) -> dict[str, float]:
        core = self.core
        s, out = core.base_step(batch, step, stepper)
        x_h, y_h = core.holdout_views(batch)
        out["holdout_loss_before"] = core.holdout_value(x_h, y_h)
        grads, c_h = self.meta_gradients(s, x_h, y_h, self.hp.l2i_inner_lr_scale * stepper.lr)
        names = [n for n, p in self.algo.model.named_parameters() if p.requires_grad]
        stepper.step_with_grads([grads[n] for n in names], optimizer=self.meta_optimizer(stepper))
        out["meta_grad_norm"] = grad_norm(stepper)
        out["holdout_loss_virtual"] = float(core.comm.all_reduce_mean(c_h))
        out["holdout_loss_after"] = core.holdout_value(x_h, y_h)
        self.algo.after_step(step)
        return out
