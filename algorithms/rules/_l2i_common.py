"""What the two Learning-to-Impute rules share (papers 000 and 001; not a rule itself).

The core is :func:`label_meta_gradient`: dC_H(theta*(z))/dz for imputed labels z, with
theta* = K virtual SGD steps on the inner loss at fixed z (001 Eq. 3, one step: 000 Eq. 4-5).
L2I-L ("learnable labels", 000 option 1) steps z along it; L2I-O ("model output", 000
option 2, 001 Alg. 1 and Eq. 4) pulls it back through z(theta) = softmax(f_theta(x_u)):

    dC_H/dtheta = (dz/dtheta)^T  dC_H(theta*(z))/dz                         (001 Eq. 4)

**Which paths the meta-gradient includes.** Eq. 4 differentiates C_H only through z: in 001
Appendix B (Eq. 8 -> 9) "theta is not a function of z", i.e. the virtual step's own
dependence on theta (the identity path theta -> theta* and the Hessian path through
grad_theta C at fixed z) is *not* part of the meta-gradient. We implement exactly that: z is
a detached leaf inside the virtual step, the hold-out loss is differentiated w.r.t. that leaf,
and the result is pulled back through a separate forward z(theta). The official code
(``theta' = theta.detach() - k lr grad`` with the *total* gradient of the inner loss,
``create_graph=True``, then backward to theta) also keeps the Hessian path
-k lr (d grad/d theta at fixed z)^T grad C_H(theta'); we do not (the paper's definition).

Conventions (the suite's losses are means, the official code's sums):

* inner loss = [C_T] + w * C_U(z), C_T / C_U this worker's share of the global means;
  ``l2i_inner_labeled`` keeps C_T (001 Alg. 1 line 8; 000 Alg. 1 and the official code use
  C_U alone), ``l2i_inner_lambda`` weighs C_U by lambda(t) (001 Eq. 3) instead of 1 (001
  Alg. 1 line 8, 000 Alg. 1, official code);
* inner learning rate eta_theta = ``l2i_inner_lr_scale`` * current lr (official: k * lr,
  k = 50 for O and 100 for L at Adam lr 0.002; the official inner loss is a *sum* over
  64 samples x 10 classes, ours a mean over samples, so the official virtual step on the
  consistency term is 64x ours at the same k);
* hold-out loss C_H = mean cross-entropy of the hold-out batch (weakly augmented like the
  labeled batch, sharded), at theta*.

Data parallelism: the virtual step uses the global gradient (``virtual_sgd_step(comm=...)``,
whose backward all-reduces), so on worker w autograd returns W * dC_H/dz_w for its shard
z_w (the derivative of the *sum* of the workers' hold-out shares). L2I-O feeds the pulled-back
gradient to ``stepper.step_with_grads`` (which averages over workers: exactly the global
meta-gradient); L2I-L divides by W.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal

import torch
from torch import nn
from torch.func import functional_call

from ..base import Batch, StepInputs
from ..hparams import require
from ..meta.functional import functional_forward, parameters_of, virtual_sgd_step
from ..meta.rule import MetaRule

Params = dict[str, torch.Tensor]


# -- the core, model-agnostic ---------------------------------------------------------------
def label_meta_gradient(params: Params, z: torch.Tensor, inner_loss: Callable[[Params, torch.Tensor], torch.Tensor],
                        holdout_loss: Callable[[Params], torch.Tensor], inner_lr: float, inner_steps: int = 1,
                        comm=None) -> tuple[torch.Tensor, torch.Tensor]:
    """dC_H(theta*(z))/dz and C_H(theta*), theta* = ``inner_steps`` SGD steps of ``inner_loss``.

    params: theta by name (detached here); z [b, ...] the imputed labels (treated as an
    independent variable: theta does not depend on z, 001 App. B); inner_loss(params, z) ->
    scalar (this worker's share of C_T + w C_U); holdout_loss(params) -> scalar (this
    worker's share of C_H). Second order: each virtual step keeps its graph. Any loss works
    (cross-entropy for classification, squared error for regression: 001 Eq. 11 and 15).
    Returns (grad [same shape as z], C_H(theta*) detached scalar).
    """
    z = z.detach().requires_grad_(True)
    cur = {n: t.detach().requires_grad_(True) for n, t in params.items()}
    for _ in range(inner_steps):
        cur = virtual_sgd_step(cur, inner_loss(cur, z), inner_lr, comm=comm, create_graph=True)
    c_h = holdout_loss(cur)
    (g,) = torch.autograd.grad(c_h, z, allow_unused=True)
    if g is None:  # the inner loss does not reach z (e.g. lambda = 0 or every sample masked)
        g = torch.zeros_like(z)
    return g.detach(), c_h.detach()


def pull_back(params: Params, z_fn: Callable[[Params], torch.Tensor], grad_z: torch.Tensor) -> Params:
    """(dz/dtheta)^T grad_z: the vector-Jacobian product of z = z_fn(params) [b, ...]; one
    forward with graph and one backward. Parameters z does not reach get zeros."""
    p = {n: t.detach().requires_grad_(True) for n, t in params.items()}
    z = z_fn(p)
    grads = torch.autograd.grad(z, list(p.values()), grad_outputs=grad_z, allow_unused=True)
    return {n: (torch.zeros_like(p[n]) if g is None else g) for n, g in zip(p, grads)}


# -- hyperparameters ------------------------------------------------------------------------
@dataclass
class L2ICommonHparams:
    """Shared by l2i_o and l2i_l (sources: 000 Alg. 1, 001 Alg. 1 / Eq. 3-6 / Tables 6, 9-10,
    official code VICO-UoE/L2I).

    l2i_inner_lr_scale: virtual-step learning rate = scale * current lr (official k = 50 for
    O, 100 for L); l2i_inner_steps: SGD steps of the virtual (inner) optimisation (001 Eq. 3;
    1 in the papers' experiments); l2i_inner_labeled: include C_T in the inner loss (001
    Alg. 1 line 8) or C_U only (000 Alg. 1, official code); l2i_inner_lambda: weigh C_U in the
    inner loss by lambda(t) (001 Eq. 3) instead of 1 (001 Alg. 1 line 8, 000, official);
    l2i_bn: BatchNorm mode of the meta passes (train: batch statistics, like the official
    code, never updating the running statistics; eval: stored statistics);
    holdout: ``joint`` (hold-out batches drawn from the labeled training set, the papers'
    default) or ``separate`` (a class-balanced ``holdout_fraction`` of the labeled set, never
    in C_T; 001 Table 6 uses 40%); holdout_batch: global hold-out batch size (the official
    code uses 64 = its labeled batch; 001 Table 5 finds 32-64 best; 32 here, the suite's
    usual labeled batch); l2i_meta_optimizer: the second update of each iteration (L2I-O's
    meta-gradient step, L2I-L's corrected-label step) with the run's optimizer and its moments
    (``shared``, 001 Alg. 1 line 11 and the official code) or with an optimizer of the same
    kind holding its own moments (``separate``; see L2IRuleBase.meta_optimizer).
    """

    l2i_inner_lr_scale: float = field(default=50.0, metadata={"range": (1.0, 1000.0), "scale": "log"})
    l2i_inner_steps: int = 1
    l2i_inner_labeled: bool = True
    l2i_inner_lambda: bool = False
    l2i_bn: Literal["train", "eval"] = "train"
    holdout: Literal["joint", "separate"] = "joint"
    holdout_fraction: float = 0.4
    holdout_batch: int = 32
    l2i_meta_optimizer: Literal["shared", "separate"] = "shared"

    def validate(self) -> None:
        require(self.l2i_inner_lr_scale > 0, "l2i_inner_lr_scale must be > 0")
        require(self.l2i_inner_steps >= 1, "l2i_inner_steps must be >= 1")
        require(0.0 < self.holdout_fraction < 1.0, "holdout_fraction must be in (0, 1)")
        require(self.holdout_batch >= 1, "holdout_batch must be >= 1")


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


class L2IStep:
    """Builds the inner and hold-out losses of one meta step from a base's StepInputs.

    ``algo``: the composed algorithm (base pieces); ``hp``: the rule's hyperparameters.
    """

    def __init__(self, algo, hp) -> None:
        self.algo, self.hp = algo, hp

    @property
    def comm(self):
        return self.algo.ctx.comm

    def holdout_views(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """This worker's weakly augmented hold-out shard: (x_h [b_h, ...], y_h [b_h])."""
        if batch.x_h is None or batch.y_h is None:
            raise ValueError("the L2I rules need a labeled hold-out batch (Batch.x_h, Batch.y_h); "
                             "the engine adds one when holdout_batch_size() > 0")
        return self.algo.views(batch.x_h), self.comm.shard(batch.y_h)

    def inner_weight(self, s: StepInputs) -> float:
        return s.weight if self.hp.l2i_inner_lambda else 1.0

    def inner_loss_from_logits(self, logits: torch.Tensor, s: StepInputs, z: torch.Tensor) -> torch.Tensor:
        """[C_T] + w C_U(z) from the logits of cat([x_l, x_u]) (this worker's share)."""
        n_l = s.x_l.shape[0]
        loss = self.inner_weight(s) * self.algo.unlabeled_losses(logits[n_l:], s, targets=z).mean()
        if self.hp.l2i_inner_labeled:
            loss = loss + self.algo.labeled_losses(logits[:n_l], s).mean()
        return loss

    def inner_loss(self, s: StepInputs) -> Callable[[Params, torch.Tensor], torch.Tensor]:
        model, mode = self.algo.model, self.hp.l2i_bn
        x = torch.cat([s.x_l, s.x_u]) if self.hp.l2i_inner_labeled else s.x_u
        if self.hp.l2i_inner_labeled:
            return lambda p, z: self.inner_loss_from_logits(functional_forward(model, p, x, mode), s, z)
        return lambda p, z: self.inner_weight(s) * self.algo.unlabeled_losses(functional_forward(model, p, x, mode), s, targets=z).mean()

    def holdout_loss(self, x_h: torch.Tensor, y_h: torch.Tensor) -> Callable[[Params], torch.Tensor]:
        model, mode = self.algo.model, self.hp.l2i_bn
        return lambda p: nn.functional.cross_entropy(functional_forward(model, p, x_h, mode), y_h)

    def model_output(self, s: StepInputs) -> Callable[[Params], torch.Tensor]:
        """z(theta) = softmax(f_theta(x_u_impute or x_u)): the student's output on the imputer's
        view (for Mean Teacher the student, not the EMA teacher, as the official code)."""
        model, mode = self.algo.model, self.hp.l2i_bn
        x = s.x_u if s.x_u_impute is None else s.x_u_impute
        return lambda p: torch.softmax(functional_forward(model, p, x, mode), dim=1)

    def approx_label_gradient(self, s: StepInputs, z: torch.Tensor, x_h: torch.Tensor, y_h: torch.Tensor,
                              inner_lr: float) -> tuple[torch.Tensor, torch.Tensor]:
        """001 Eq. 6: dC_H/dz with the virtual step restricted to the classifier and the
        features frozen at theta (theta_f* = theta_f): depends on the data only through the
        features of the unlabeled, labeled and hold-out samples. Returns (grad z, C_H(theta*))."""
        model, mode = self.algo.model, self.hp.l2i_bn
        params = parameters_of(model)
        with torch.no_grad():
            if self.hp.l2i_inner_labeled:
                _, feats = forward_with_features(model, params, torch.cat([s.x_l, s.x_u]), mode)
            else:
                _, feats = forward_with_features(model, params, s.x_u, mode)
            _, feats_h = forward_with_features(model, params, x_h, mode)
        cparams = classifier_params(model)
        w = self.inner_weight(s)

        def inner(p: Params, zz: torch.Tensor) -> torch.Tensor:
            logits = classifier_forward(model, p, feats)
            if self.hp.l2i_inner_labeled:
                return self.inner_loss_from_logits(logits, s, zz)
            return w * self.algo.unlabeled_losses(logits, s, targets=zz).mean()

        def hold(p: Params) -> torch.Tensor:
            return nn.functional.cross_entropy(classifier_forward(model, p, feats_h), y_h)

        return label_meta_gradient(cparams, z, inner, hold, inner_lr, self.hp.l2i_inner_steps, comm=self.comm)

    @torch.no_grad()
    def holdout_value(self, x_h: torch.Tensor, y_h: torch.Tensor) -> float:
        """Global mean C_H at the model's current weights (one forward, BN untouched)."""
        loss = nn.functional.cross_entropy(functional_forward(self.algo.model, parameters_of(self.algo.model), x_h,
                                                              self.hp.l2i_bn), y_h)
        return float(self.comm.all_reduce_mean(loss.detach()))

    def base_step(self, batch: Batch, step: int, stepper) -> tuple[StepInputs, dict[str, float]]:
        """The base's own update on C_T + lambda C_U (001 Alg. 1 lines 4-6), without advancing
        the lr schedule; returns the step's inputs and the usual loss diagnostics."""
        s = self.algo.prepare(batch, step)
        loss_l = self.algo.labeled_losses(s.logits_l, s).mean()
        loss_u = self.algo.unlabeled_losses(s.logits_u, s).mean()
        loss = loss_l + s.weight * loss_u
        stepper.step(loss, advance_schedule=False)
        return s, {"loss": float(loss.detach()), "loss_labeled": float(loss_l.detach()),
                   "loss_unlabeled": float(loss_u.detach()), "unlabeled_weight": float(s.weight),
                   "mask_fraction": float(s.mask.float().mean())}


def grad_norm(stepper) -> float:
    """Norm of the gradient the last optimizer step used (already averaged over workers)."""
    return float(torch.sqrt(sum((p.grad.double() ** 2).sum() for p in stepper.params if p.grad is not None)))


class L2IRuleBase(MetaRule):
    """What both L2I rules share as rules: the step builder ``self.core``, the hold-out batch
    from the hyperparameters (``holdout_batch``, ``holdout``, ``holdout_fraction``), and the
    optimizer of the second (meta) update per iteration with its checkpoint state."""

    diagnostics = ("holdout_loss_before", "holdout_loss_after", "holdout_loss_virtual", "meta_grad_norm", "mask_fraction")

    def __init__(self, algo, hp) -> None:
        super().__init__(algo, hp)
        self.core = L2IStep(algo, hp)
        self._meta_opt: torch.optim.Optimizer | None = None
        self._pending_state: dict | None = None

    def holdout_batch_size(self) -> int:
        return self.hp.holdout_batch

    def holdout_mode(self):
        return self.hp.holdout

    def holdout_fraction(self) -> float:
        return self.hp.holdout_fraction

    def meta_optimizer(self, stepper) -> torch.optim.Optimizer | None:
        """The optimizer of the second update: None (the run's own, ``shared``: the papers'
        "opt-adam" twice per iteration and the official code) or, for ``separate``, one of
        the same class and settings with its own moments, so that the second update does not
        replay the first update's momentum (with a shared Adam a near-zero meta-gradient
        still moves theta by ~0.9 of the previous step: ~2x the base's effective lr)."""
        if self.hp.l2i_meta_optimizer == "shared":
            return None
        if self._meta_opt is None:
            self._meta_opt = stepper.fresh_optimizer()
            if self._pending_state is not None:
                self._meta_opt.load_state_dict(self._pending_state)
                self._pending_state = None
        return self._meta_opt

    def state_dict(self) -> dict:
        if self._meta_opt is not None:
            return {"meta_optimizer": self._meta_opt.state_dict()}
        return {"meta_optimizer": self._pending_state} if self._pending_state is not None else {}

    def load_state_dict(self, state: dict) -> None:
        self._pending_state = state.get("meta_optimizer")
        if self._meta_opt is not None and self._pending_state is not None:
            self._meta_opt.load_state_dict(self._pending_state)
            self._pending_state = None
