"""What the two Learning-to-Impute rules share (papers 000 and 001; not a rule itself).

Both are :class:`~algorithms.meta.rule.TwoUpdateRule` s: the template takes the base's own
step on C_T + lambda C_U (001 Alg. 1 lines 4-6), then the rule's meta step builds the inner
and hold-out losses here (:class:`L2IStep`) and differentiates the hold-out loss through the
imputed labels (:func:`~algorithms.meta.label_gradient.label_meta_gradient`).

Conventions (the suite's losses are means, the official code's sums; docs/methods.md):

* inner loss = [C_T] + w * C_U(z), C_T / C_U this worker's share of the global means;
  ``l2i_inner_labeled`` keeps C_T (001 Alg. 1 line 8; 000 Alg. 1 and the official code use
  C_U alone), ``l2i_inner_lambda`` weighs C_U by lambda(t) (001 Eq. 3) instead of 1;
* C_U of the meta step (``l2i_inner_loss``): ``mse_views`` (001 and 000 App. A.2, for every
  base) l_u = ||softmax f(x_a) - z||^2 (summed over classes; regression: the squared error of
  the regressed values, z carried from x_b's displacement to x_a's) with z imputed from another
  weak view x_b of the same unlabeled batch, both views drawn for the meta step; ``base``:
  the base's own distance and mask on its student view, z from the view the base imputed
  from (for Pseudo-Label and MixMatch the student's own view, where grad C_U vanishes at
  theta_hat and only C_T moves the virtual step). L2I-L's label step uses the same l_u;
* inner learning rate eta_theta = ``l2i_inner_lr_scale`` * current lr;
* hold-out loss C_H = the task's mean loss on the hold-out batch (cross-entropy; the squared
  error for regression), weakly augmented like the labeled batch, sharded, at theta*;
* the task-dependent pieces are the base's (``RuleHost``: ``target_loss``, ``labeled_views``,
  ``unlabeled_view``, ``project_targets`` and the run's ``ctx.task``), so the same rules run on
  classification and regression bases.

Data parallelism: the virtual step uses the global gradient (``virtual_sgd_step(comm=...)``,
whose backward all-reduces), so on worker w autograd returns W * dC_H/dz_w for its shard z_w.
L2I-O feeds the pulled-back gradient to the stepper (which averages over workers: exactly the
global meta-gradient); L2I-L divides by W.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal, TypeVar

import torch
from torch import nn
from torch.func import functional_call

from .. import losses
from ..base import Batch, HoldoutSpec, StepInputs
from ..hparams import require
from ..meta.functional import functional_forward, parameters_of, same_randomness
from ..meta.label_gradient import label_meta_gradient
from ..meta.rule import RuleHost, TwoUpdateRule
from ..task import TASKS

Params = dict[str, torch.Tensor]


@dataclass
class L2ICommonHparams:
    """Shared by l2i_o and l2i_l (sources: 000 Alg. 1, 001 Alg. 1 / Eq. 3-6 / Tables 6, 9-10,
    official code VICO-UoE/L2I).

    l2i_inner_lr_scale: virtual-step learning rate = scale * current lr (official k = 50 for
    O, 100 for L); l2i_inner_steps: SGD steps of the virtual (inner) optimisation (001 Eq. 3;
    1 in the papers' experiments); l2i_inner_labeled: include C_T in the inner loss (001
    Alg. 1 line 8) or C_U only (000 Alg. 1, official code); l2i_inner_lambda: weigh C_U in the
    inner loss by lambda(t) (001 Eq. 3) instead of 1 (001 Alg. 1 line 8, 000, official);
    meta_bn: BatchNorm mode of the meta passes (train: batch statistics, like the official
    code, never updating the running statistics; eval: stored statistics);
    holdout: ``joint`` (hold-out batches drawn from the labeled training set, the papers'
    default) or ``separate`` (a class-balanced ``holdout_fraction`` of the labeled set, never
    in C_T; 001 Table 6 uses 40%); holdout_batch: global hold-out batch size (the official
    code uses 64 = its labeled batch; 001 Table 5 finds 32-64 best; 32 here, the suite's
    usual labeled batch); l2i_meta_optimizer: the second update of each iteration with the
    run's optimizer and its moments (``shared``, 001 Alg. 1 line 11 and the official code) or
    with an optimizer of the same kind holding its own moments (``separate``: with a shared
    Adam a near-zero meta-gradient still moves theta by ~0.9 of the previous step);
    l2i_inner_loss: the unlabeled term of the meta step, ``mse_views`` (001 / 000 App. A.2:
    squared error to z imputed from another weak view) or ``base`` (the base's distance and
    mask, z from the base's imputer view). diag_every: steps between computations of the
    hold-out diagnostics C_H before and after (one hold-out forward each; 0 = never, reported
    as NaN); between computations the last values are reported.
    """

    renamed = {"l2i_bn": "meta_bn"}
    # the diagnostics' cadence changes no training step (RNG rewound around them): runs at the default keep their ids
    optional_in_identity = ("diag_every",)

    l2i_inner_lr_scale: float = field(default=50.0, metadata={"range": (1.0, 1000.0), "scale": "log"})
    l2i_inner_steps: int = 1
    l2i_inner_labeled: bool = True
    l2i_inner_lambda: bool = False
    meta_bn: Literal["train", "eval"] = "train"
    holdout: Literal["joint", "separate"] = "joint"
    holdout_fraction: float = 0.4
    holdout_batch: int = 32
    l2i_meta_optimizer: Literal["shared", "separate"] = "shared"
    l2i_inner_loss: Literal["mse_views", "base"] = "mse_views"
    diag_every: int = 50

    def validate(self) -> None:
        require(self.l2i_inner_lr_scale > 0, "l2i_inner_lr_scale must be > 0")
        require(self.l2i_inner_steps >= 1, "l2i_inner_steps must be >= 1")
        require(0.0 < self.holdout_fraction < 1.0, "holdout_fraction must be in (0, 1)")
        require(self.holdout_batch >= 1, "holdout_batch must be >= 1")
        require(self.diag_every >= 0, "diag_every must be >= 0")


# -- pieces of a meta step on a real model ---------------------------------------------------
def forward_with_features(model: nn.Module, params: Params, x: torch.Tensor, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits [B, C], features [B, F]) of one functional forward (BN statistics untouched);
    the features are the classifier's input (networks expose ``classifier``)."""
    seen: list[torch.Tensor] = []
    handle = model.classifier.register_forward_pre_hook(lambda mod, args: seen.append(args[0]))
    try:
        logits = functional_forward(model, params, x, mode)
    finally:
        handle.remove()
    return logits, seen[-1]


def classifier_params(model: nn.Module) -> Params:
    """The last layer's parameters by their names in the full model (``classifier.*``)."""
    return {f"classifier.{n}": p.detach() for n, p in model.classifier.named_parameters() if p.requires_grad}


def classifier_forward(model: nn.Module, cparams: Params, feats: torch.Tensor) -> torch.Tensor:
    """The classifier alone on given features: [B, F] -> [B, C]."""
    local = {n.split(".", 1)[1]: t for n, t in cparams.items()}
    return functional_call(model.classifier, local, (feats,), strict=False)


@dataclass
class MetaViews:
    """The unlabeled inputs of one meta step (this worker's shard): x_u [b, ...] the student's
    input of the virtual step (and of L2I-L's label step), x_z [b, ...] the view z(theta) is
    imputed from; offset [b, K]: for regression, what carries an output on x_z over to a
    target of x_u (their displacements differ; output units), None for classification."""

    x_u: torch.Tensor
    x_z: torch.Tensor
    offset: torch.Tensor | None = None


class L2IStep:
    """Builds the inner and hold-out losses of one meta step from a base's StepInputs.

    ``algo``: the base method (rule host); ``hp``: the rule's hyperparameters.
    """

    def __init__(self, algo: RuleHost, hp: L2ICommonHparams) -> None:
        self.algo, self.hp = algo, hp

    @property
    def comm(self):
        return self.algo.ctx.comm

    def holdout_views(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """This worker's weakly augmented hold-out shard: (x_h [b_h, ...], y_h [b_h] or [b_h, K])."""
        if batch.x_h is None or batch.y_h is None:
            raise ValueError("the L2I rules need a labeled hold-out batch (Batch.x_h, Batch.y_h); "
                             "the engine adds one when holdout_spec(hp).size > 0")
        return self.algo.labeled_views(batch.x_h, batch.y_h)

    def meta_views(self, s: StepInputs, batch: Batch) -> MetaViews:
        """``mse_views``: two weak views of the global unlabeled batch, drawn now (two generator
        draws), sharded; ``base``: the base's student view and the view it imputed from."""
        if self.hp.l2i_inner_loss != "mse_views":
            return MetaViews(s.x_u_student, s.imputer_view, s.target_offset)
        task = self.algo.ctx.task
        if not task.moves_targets:
            return MetaViews(self.algo.views(batch.x_u), self.algo.views(batch.x_u))
        (x_a, moved_a), (x_z, moved_z) = self.algo.unlabeled_view(batch.x_u), self.algo.unlabeled_view(batch.x_u)
        return MetaViews(x_a, x_z, task.view_offset(moved_z, moved_a))

    def output(self, logits: torch.Tensor, views: MetaViews) -> torch.Tensor:
        """The model output on ``views.x_z`` read as targets of ``views.x_u``: softmax(logits) [b, C]
        (regression: the regressed values [b, K] plus ``views.offset``)."""
        z = self.algo.ctx.task.output_targets(logits)
        return z if views.offset is None else z + views.offset

    def unlabeled_terms(self, logits_u: torch.Tensor, s: StepInputs, z: torch.Tensor) -> torch.Tensor:
        """Per-sample l_u(f(x_u), z) of the meta step [b]: the squared error of the softmax
        (``mse_views``) or the base's masked distance (``base``)."""
        if self.hp.l2i_inner_loss == "mse_views":  # regression: the task's squared error
            return self.algo.ctx.task.consistency(logits_u, z, losses.softmax_squared_error)
        return self.algo.unlabeled_losses(logits_u, s, targets=z)

    def inner_weight(self, s: StepInputs) -> float:
        return s.weight if self.hp.l2i_inner_lambda else 1.0

    def inner_input(self, s: StepInputs, views: MetaViews) -> torch.Tensor:
        """What the virtual step's forward sees: cat([x_l, x_u]) with C_T (one forward, so that
        train-mode BatchNorm normalises both together, as the base's own forward), else x_u."""
        return torch.cat([s.x_l, views.x_u]) if self.hp.l2i_inner_labeled else views.x_u

    def inner_loss_from_logits(self, logits: torch.Tensor, s: StepInputs, z: torch.Tensor) -> torch.Tensor:
        """[C_T] + w C_U(z) from the logits of :meth:`inner_input` (this worker's share)."""
        n_l = s.x_l.shape[0] if self.hp.l2i_inner_labeled else 0
        loss = self.inner_weight(s) * self.unlabeled_terms(logits[n_l:], s, z).mean()
        if self.hp.l2i_inner_labeled:
            loss = loss + self.algo.labeled_losses(logits[:n_l], s).mean()
        return loss

    def inner_loss(self, s: StepInputs, views: MetaViews) -> Callable[[Params, torch.Tensor], torch.Tensor]:
        """(params, z) -> the inner loss at those weights and labels (a functional forward)."""
        model, mode, x = self.algo.model, self.hp.meta_bn, self.inner_input(s, views)
        return lambda p, z: self.inner_loss_from_logits(functional_forward(model, p, x, mode), s, z)

    def holdout_criterion(self, logits_h: torch.Tensor, y_h: torch.Tensor) -> torch.Tensor:
        """C_H from the hold-out logits [b_h, C] and labels [b_h] (or [b_h, K]): the task's mean
        loss (cross-entropy; the squared error for regression)."""
        return self.algo.target_loss(logits_h, y_h)

    def holdout_loss(self, x_h: torch.Tensor, y_h: torch.Tensor) -> Callable[[Params], torch.Tensor]:
        """params -> C_H of this worker's hold-out shard at those weights (a functional forward)."""
        model, mode = self.algo.model, self.hp.meta_bn
        return lambda p: self.holdout_criterion(functional_forward(model, p, x_h, mode), y_h)

    def model_output(self, views: MetaViews) -> Callable[[Params], torch.Tensor]:
        """z(theta) = softmax(f_theta(x_z)): the student's output on the imputing view (for Mean
        Teacher under ``base`` the student on the teacher's view, not the EMA teacher, as the
        official code)."""
        model, mode, x = self.algo.model, self.hp.meta_bn, views.x_z
        return lambda p: self.output(functional_forward(model, p, x, mode), views)

    def approx_label_gradient(self, s: StepInputs, views: MetaViews, z: torch.Tensor, x_h: torch.Tensor,
                              y_h: torch.Tensor, inner_lr: float) -> tuple[torch.Tensor, torch.Tensor]:
        """001 Eq. 6: dC_H/dz with the virtual step restricted to the classifier and the
        features frozen at theta (theta_f* = theta_f): depends on the data only through the
        features of the unlabeled, labeled and hold-out samples. Returns (grad z, C_H(theta*))."""
        model, mode = self.algo.model, self.hp.meta_bn
        params = parameters_of(model)
        with torch.no_grad():
            _, feats = forward_with_features(model, params, self.inner_input(s, views), mode)
            _, feats_h = forward_with_features(model, params, x_h, mode)
        cparams = classifier_params(model)

        def inner(p: Params, zz: torch.Tensor) -> torch.Tensor:
            return self.inner_loss_from_logits(classifier_forward(model, p, feats), s, zz)

        def hold(p: Params) -> torch.Tensor:
            return self.holdout_criterion(classifier_forward(model, p, feats_h), y_h)

        # the double backward: through the last layer alone it costs next to nothing (and keeps approx's numbers)
        return label_meta_gradient(cparams, z, inner, hold, inner_lr, self.hp.l2i_inner_steps, comm=self.comm,
                                   mixed="reverse")

    @torch.no_grad()
    def holdout_value(self, x_h: torch.Tensor, y_h: torch.Tensor) -> torch.Tensor:
        """Global mean C_H at the model's current weights (one forward, BN untouched). A
        diagnostic: the RNG is rewound after it, so that its dropout draws (meta_bn train) do not
        move training's stream, and training does not depend on ``diag_every``."""
        with same_randomness(x_h.device) as again:
            loss = self.holdout_loss(x_h, y_h)(parameters_of(self.algo.model))
            again()
        return self.comm.all_reduce_mean(loss.detach())


@dataclass
class HoldoutPass:
    """What every L2I meta step starts with: this worker's hold-out shard and C_H before
    (None on a step without hold-out diagnostics)."""

    x_h: torch.Tensor
    y_h: torch.Tensor
    loss_before: torch.Tensor | None


HP = TypeVar("HP", bound=L2ICommonHparams)


class L2IRuleBase(TwoUpdateRule[HP]):
    """What both L2I rules share as rules: the step builder ``self.core``, the hold-out batch
    from the hyperparameters, the second update's optimizer choice, C_H before and after."""

    diagnostics = ("holdout_loss_before", "holdout_loss_after", "holdout_loss_virtual", "meta_grad_norm", "mask_fraction")
    tasks = TASKS  # 001 Sec. 5.2 and App. B.2: the same rules for landmark regression

    def __init__(self, algo: RuleHost, hp: HP) -> None:
        super().__init__(algo, hp)
        self.core = L2IStep(algo, hp)
        nan = float("nan")  # never measured yet (diag_every 0: never)
        self._last_holdout: dict[str, torch.Tensor | float] = {"holdout_loss_before": nan, "holdout_loss_after": nan}

    @classmethod
    def floor_for(cls, hp: L2ICommonHparams):
        # the declared exact floor is the one-step forward-over-reverse path; more steps double-backward
        if getattr(hp, "meta_method", None) == "exact" and hp.l2i_inner_steps != 1:
            return None
        return super().floor_for(hp)

    @classmethod
    def holdout_spec(cls, hp: L2ICommonHparams) -> HoldoutSpec:
        return HoldoutSpec(hp.holdout_batch, hp.holdout, hp.holdout_fraction)

    def separate_optimizer(self) -> bool:
        return self.hp.l2i_meta_optimizer == "separate"

    def diagnostics_due(self, step: int) -> bool:
        """Whether step ``step`` computes the hold-out diagnostics (every ``diag_every`` steps)."""
        return self.hp.diag_every > 0 and step % self.hp.diag_every == 0

    def holdout_pass(self, batch: Batch, step: int) -> HoldoutPass:
        """The hold-out views (drawn from the run's generator, every step) and, on a diagnostics
        step, C_H at the current weights."""
        x_h, y_h = self.core.holdout_views(batch)
        before = self.core.holdout_value(x_h, y_h) if self.diagnostics_due(step) else None
        return HoldoutPass(x_h, y_h, before)

    def holdout_diagnostics(self, hold: HoldoutPass, c_h: torch.Tensor | None) -> dict[str, torch.Tensor | float]:
        """holdout_loss_before / _after (C_H before the meta step and after the second update,
        000 Fig. 2; the last computed values between diagnostics steps) and holdout_loss_virtual
        (C_H(theta*), free, every step the meta step computed it)."""
        out: dict[str, torch.Tensor | float] = {}
        if c_h is not None:
            out["holdout_loss_virtual"] = self.core.comm.all_reduce_mean(c_h)
        if hold.loss_before is not None:
            self._last_holdout = {"holdout_loss_before": hold.loss_before,
                                  "holdout_loss_after": self.core.holdout_value(hold.x_h, hold.y_h)}
        out.update(self._last_holdout)
        return out

    def state_dict(self) -> dict:
        # the last diagnostics travel with a checkpoint, so a resume between diagnostics steps reports as before
        return {**super().state_dict(), "last_holdout": dict(self._last_holdout)}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self._last_holdout.update(state.get("last_holdout", {}))
