"""Meta-Gradient SSL (paper 003, "Meta-Learning with Meta-Gradients for SSL") as a meta rule.

Not to be confused with Meta-Semi (paper 002, ``meta_semi``): the official code of *this*
method (Sakura03/SemiMeta) calls itself "MetaSemi", but it is paper 003.

Per step (Alg. 2, Eq. 5-13), on top of a base method's StepInputs ``s``:

1. pseudo-labels y_tilde [b_u, C]: the base's imputation ``s.targets`` (``meta_grad_init =
   "base"``, the point of composing: Pseudo-Label's confident one-hot argmax, Mean Teacher's
   teacher softmax, ...) or the student's own softmax on its view (``"model"``, the paper's
   Eq. 2: y_tilde = f(x_u; theta_t));
2. the label meta-gradient. With the labeled gradient v = grad_theta L_l(theta) (mean KL /
   cross-entropy on the clean labeled batch, averaged over workers) and alpha = alpha_t the
   current learning rate (the paper's inner step is the training step, Eq. 4):

       g_i = -alpha * d/dy_i <v, grad_theta l_i(theta, y_i)> = -alpha * D_v [dl_i/dy_i](theta)

   (Eq. 7-8), l_i the per-sample unlabeled loss (base mask times the distance). Since
   d/dy <v, grad_theta l> = D_v (dl/dy) (mixed partials commute), it is a directional
   derivative along v of the [b_u, C] map theta -> dl/dy, computed with the shared primitive
   ``directional_derivatives``: ``jvp`` (exact first order) or ``fd`` (Eq. 10-11: central
   difference, eps = eps_scale / ||v||, eps_scale 0.01). ``exact`` is Alg. 1: differentiate
   L_l(theta - alpha grad_theta L_u(theta, y)) w.r.t. y through a functional virtual SGD step
   (second order; equals the first order up to O(alpha^2));
3. y_hat = clip_and_renormalise(y_tilde - beta_t g) with beta_t = ``meta_lr`` (or the current
   learning rate, ``meta_lr_from_lr``);
4. loss = mean_i KL(y_in_i || softmax f(x_in_i)) + lambda(t) * mean_i mask_i ||softmax f(x_u_i) - y_hat_i||^2
   with cross-domain MixUp (Eq. 12): x_in_i = lam_i x_l_i + (1 - lam_i) x_u_i,
   y_in_i = lam_i y_i + (1 - lam_i) y_hat_i, lam_i ~ Beta(gamma, gamma) i.i.d. per pair
   (``use_mixup = False``: KL on the clean labeled batch, the "meta only" ablation of
   Table 4; ``meta_grad_method = "none"``: y_hat = y_tilde, the "mixup only" ablation).

Choices and where they come from:

* scale of g: the per-sample loss l_i, not the batch mean of Eq. 3, so g is B_u times the
  paper's Eq. 8 and beta_t does not depend on the batch size (the official code has no 1/B_u
  either). ``exact`` is rescaled by the global B_u to match.
* the official update is y_hat = softmax f(x_u) - lr * (p(theta + eps v) - p(theta - eps v)) / eps
  (OFFICIAL_CODE_NOTES.md). With the paper's MSE consistency dl/dy = 2 (y - p), so the central
  difference here gives g = alpha (p+ - p-) / eps: that is exactly the paper's Eq. 11 (times
  B_u), the official "/eps" being the MSE's factor 2, not a missing 2. The official update is
  therefore ``meta_lr = 1`` (beta = 1, alpha = lr, ``meta_grad_fd_divisor = "2eps"``), or
  ``meta_lr = 0.5`` with the divisor ``"eps"``; ``meta_lr_from_lr`` (beta_t = lr, the notes'
  "current lr as meta lr" read literally) then scales the change by lr^2.
* projection: clip negatives to 0 and renormalise each row (the official code; not the
  Euclidean projection onto the simplex). A row that clips to all zeros becomes uniform.
* distance of the meta step and of the consistency term: ``meta_grad_loss = "mse"`` is the
  paper's ||softmax f(x_u) - y||^2 summed over classes (Eq. 13); ``"base"`` uses the base's
  distance (e.g. Pseudo-Label's cross-entropy). Both use the base's mask and its lambda(t)
  (``algo.unlabeled_weight``); the official schedule (weight 1, ramped over 4,000 steps) is
  the base's ``lambda_u = 1`` with its ramp-up. MixUp uses every unlabeled sample (the paper
  has no mask).
* MixUp pairs labeled i with unlabeled i (Eq. 12); when B_l != B_u the shorter batch is
  cycled (i mod B), giving max(B_l, B_u) mixed samples. No max(lam, 1 - lam) (official code).
  Mixing is on the global batch (views and y_hat all-gathered, lam drawn from the shared
  generator, then sharded), so W workers mix exactly as one.
* BN mode of the meta pass (``meta_grad_bn``): ``eval`` as the official code; functional
  passes never update running statistics. In ``train`` mode with dropout, ``fd``'s two
  forwards draw different masks (use ``jvp`` there).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal

import numpy as np
import torch
import torch.nn.functional as F

from .. import losses
from ..base import Batch, StepInputs
from ..hparams import require
from ..meta import directional_derivatives, functional_forward, loss_gradient, parameters_of, virtual_sgd_step
from ..meta.rule import MetaRule, register_rule


@dataclass
class MetaGradHparams:
    """Meta-Gradient SSL (paper 003, Alg. 1-2, Eq. 5-13; official code notes).

    meta_lr: beta_t, step size of the pseudo-labels (Eq. 6); 1.0 reproduces the official
    code's update (see the module docstring). meta_lr_from_lr: beta_t = current lr instead.
    meta_grad_method: ``fd`` (Alg. 2, central finite difference Eq. 10), ``jvp`` (exact first
    order), ``exact`` (Alg. 1, through the virtual SGD step), ``none`` (no meta step).
    meta_grad_fd_divisor: ``2eps`` (central difference) or ``eps`` (official code, 2x).
    meta_grad_eps_scale: eps = scale / ||grad L_l|| (0.01, Eq. 10 after Liu et al. 2018).
    meta_grad_bn: BN mode of the meta pass (official: eval). meta_grad_init: y_tilde from the
    base's imputation or the model's softmax (Eq. 2). meta_grad_loss: ``mse`` (Eq. 13) or the
    base's distance. use_mixup / mixup_gamma: cross-domain MixUp, lam ~ Beta(gamma, gamma)
    (Eq. 12; official: 0.1 on SVHN, 1.0 on CIFAR).
    """

    meta_lr: float = field(default=1.0, metadata={"range": (0.05, 10.0), "scale": "log"})
    meta_lr_from_lr: bool = False
    meta_grad_method: Literal["fd", "jvp", "exact", "none"] = "fd"
    meta_grad_fd_divisor: Literal["2eps", "eps"] = "2eps"
    meta_grad_eps_scale: float = 0.01
    meta_grad_bn: Literal["train", "eval"] = "eval"
    meta_grad_init: Literal["base", "model"] = "base"
    meta_grad_loss: Literal["mse", "base"] = "mse"
    use_mixup: bool = True
    mixup_gamma: float = field(default=1.0, metadata={"range": (0.1, 1.0), "scale": "linear"})

    def validate(self) -> None:
        require(self.meta_lr >= 0, "meta_grad meta_lr must be >= 0")
        require(self.meta_grad_eps_scale > 0, "meta_grad meta_grad_eps_scale must be > 0")
        require(self.mixup_gamma > 0, "meta_grad mixup_gamma must be > 0")


def clip_and_renormalise(y: torch.Tensor) -> torch.Tensor:
    """Back onto the simplex as the official code does: negatives -> 0, rows divided by their
    sum; a row with nothing left becomes uniform. y [B, C] -> [B, C]."""
    y = y.clamp(min=0)
    total = y.sum(dim=1, keepdim=True)
    uniform = torch.full_like(y, 1.0 / y.shape[1])
    return torch.where(total > 0, y / total.clamp(min=torch.finfo(y.dtype).tiny), uniform)


def sample_betas(gamma: float, n: int, generator: torch.Generator) -> np.ndarray:
    """n i.i.d. draws of Beta(gamma, gamma) from the shared generator (one torch draw seeds a
    numpy sampler, as :func:`algorithms.mixup.sample_beta`), identical on every worker. -> [n]."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    return np.random.default_rng(seed).beta(gamma, gamma, size=n)


def cross_mixup(x_l: torch.Tensor, y_l: torch.Tensor, x_u: torch.Tensor, y_u: torch.Tensor,
                lam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 12 on global batches: pair labeled i with unlabeled i (cycling the shorter batch).

    x_l [B_l, ...], y_l [B_l, C], x_u [B_u, ...], y_u [B_u, C], lam [max(B_l, B_u)] ->
    (x_in [N, ...], y_in [N, C]) with N = max(B_l, B_u).
    """
    n = lam.shape[0]
    il = torch.arange(n, device=x_l.device) % x_l.shape[0]
    iu = torch.arange(n, device=x_l.device) % x_u.shape[0]
    lx = lam.view(-1, *([1] * (x_l.dim() - 1))).to(x_l.dtype)
    ly = lam.view(-1, 1).to(y_l.dtype)
    return lx * x_l[il] + (1 - lx) * x_u[iu], ly * y_l[il] + (1 - ly) * y_u[iu]


def kl_divergence(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """KL(targets || softmax(logits)) per sample (0 log 0 = 0): [B, C], [B, C] -> [B]."""
    return losses.soft_cross_entropy(logits, targets) + torch.special.xlogy(targets, targets).sum(dim=1)


@register_rule
class MetaGrad(MetaRule):
    """Meta-Gradient SSL: pseudo-labels moved along the meta-gradient of the labeled loss
    after one virtual SGD step, then cross-domain MixUp; see the module docstring."""

    name = "meta_grad"
    diagnostics = ('label_correction', 'meta_grad_norm', 'label_flip_fraction', 'mask_fraction', 'clipped_fraction', 'meta_lr')  # results columns diag_<name>
    Hparams = MetaGradHparams
    description = "Meta-Gradient SSL: pseudo-labels updated by the labeled loss's meta-gradient, cross-domain MixUp"

    # -- pieces ------------------------------------------------------------------
    def unlabeled_distance(self) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """d(logits [b, C], targets [b, C]) -> [b] of the meta step and the consistency term."""
        if self.hp.meta_grad_loss == "mse":
            return losses.softmax_squared_error
        return self.algo.distance

    def labeled_targets(self, s: StepInputs) -> torch.Tensor:
        """y_l as a distribution [b_l, C] (MixMatch-like bases: their soft labeled targets)."""
        if s.y_l_soft is not None:
            return s.y_l_soft
        return F.one_hot(s.y_l, self.algo.ctx.num_classes).to(s.targets.dtype)

    def label_gradient(self, x_l: torch.Tensor, y_l: torch.Tensor, x_u: torch.Tensor, y_u: torch.Tensor,
                       mask: torch.Tensor, alpha: float, method: str | None = None) -> torch.Tensor:
        """g_i = -alpha d/dy_i <grad L_l(theta), grad l_i(theta, y_i)> on this worker's shard.

        x_l [b_l, ...], y_l [b_l, C] labeled distributions, x_u [b_u, ...], y_u [b_u, C]
        pseudo-labels, mask [b_u] -> [b_u, C]. ``exact``: B_u * d/dy_i L_l(theta - alpha
        grad mean_u l(theta, y)) (global B_u). Never touches BN statistics or ``.grad``.
        """
        hp, model, comm = self.hp, self.algo.model, self.algo.ctx.comm
        method = method or hp.meta_grad_method
        dist = self.unlabeled_distance()
        mask = mask.detach()
        if method == "exact":
            params = {n: p.detach().requires_grad_(True) for n, p in parameters_of(model).items()}
            y = y_u.detach().clone().requires_grad_(True)
            loss_u = (dist(functional_forward(model, params, x_u, hp.meta_grad_bn), y) * mask).mean()
            stepped = virtual_sgd_step(params, loss_u, alpha, comm, create_graph=True)
            loss_l = losses.soft_cross_entropy(functional_forward(model, stepped, x_l, hp.meta_grad_bn), y_l).mean()
            (gy,) = torch.autograd.grad(loss_l, y, allow_unused=True)
            if gy is None:
                return torch.zeros_like(y_u)
            # The all-reduce's backward sums the incoming gradients, so gy = d(sum_w L_l^w)/dy =
            # W dG/dy with G the global mean; times b_u = B_u / W undoes the 1/B_u of loss_u's mean.
            return gy.detach() * x_u.shape[0]
        v = loss_gradient(model, losses.soft_cross_entropy, x_l, y_l, hp.meta_grad_bn)
        v = {n: comm.all_reduce_mean(t) for n, t in v.items()}
        if float(sum((t.double() ** 2).sum() for t in v.values())) == 0.0:
            return torch.zeros_like(y_u)

        def dloss_dy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            # dl_i/dy_i [b, C]: closed form for the paper's MSE, else a function transform (jvp composes with it)
            if hp.meta_grad_loss == "mse":
                return 2 * (y - F.softmax(logits, dim=1)) * mask[:, None]
            return torch.func.grad(lambda yy: (dist(logits, yy) * mask).sum())(y)

        d = directional_derivatives(model, dloss_dy, x_u, y_u.detach(), v, hp.meta_grad_bn, method,
                                    eps_scale=hp.meta_grad_eps_scale)
        if method == "fd" and hp.meta_grad_fd_divisor == "eps":
            d = 2 * d
        return -alpha * d

    def mixed_batch(self, s: StepInputs, y_l: torch.Tensor, y_hat: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """This worker's shard of the globally mixed batch: (x_in [n, ...], y_in [n, C], lam [N])."""
        comm, g = self.algo.ctx.comm, self.algo.ctx.generator
        x_l, y_l_g = comm.all_gather(s.x_l.detach()), comm.all_gather(y_l.detach())
        x_u, y_u_g = comm.all_gather(s.x_u.detach()), comm.all_gather(y_hat.detach())
        n = max(x_l.shape[0], x_u.shape[0])
        lam = torch.as_tensor(sample_betas(self.hp.mixup_gamma, n, g), device=x_l.device)
        x_in, y_in = cross_mixup(x_l, y_l_g, x_u, y_u_g, lam)
        return comm.shard(x_in), comm.shard(y_in), lam

    # -- the step ----------------------------------------------------------------
    def train_step(self, batch: Batch, step: int, stepper) -> dict[str, float]:
        algo, hp, comm = self.algo, self.hp, self.algo.ctx.comm
        s = algo.prepare(batch, step)
        y_l = self.labeled_targets(s)
        if hp.meta_grad_init == "model":
            y_tilde = F.softmax(s.logits_u.detach(), dim=1)
        else:
            y_tilde = s.targets.detach()
        alpha = stepper.lr
        beta = stepper.lr if hp.meta_lr_from_lr else hp.meta_lr
        if hp.meta_grad_method != "none" and alpha != 0 and beta != 0:
            g = self.label_gradient(s.x_l, y_l, s.x_u, y_tilde, s.mask, alpha)
            raw = y_tilde - beta * g
            y_hat = clip_and_renormalise(raw)
            clipped = float(comm.all_reduce_mean((raw < 0).to(raw.dtype).mean()))
        else:
            g, y_hat, clipped = torch.zeros_like(y_tilde), y_tilde, 0.0

        per_u = self.unlabeled_distance()(s.logits_u, y_hat) * s.mask
        loss_u = per_u.mean()
        if hp.use_mixup:
            x_in, y_in, _ = self.mixed_batch(s, y_l, y_hat)
            loss_l = kl_divergence(algo.model(x_in), y_in).mean()
        else:
            loss_l = kl_divergence(s.logits_l, y_l).mean()
        loss = loss_l + s.weight * loss_u
        stepper.step(loss)
        algo.after_step(step)

        # cheap diagnostics, every step: global means over the unlabeled batch (equal shards)
        stats = torch.stack([
            (y_hat - y_tilde).abs().sum(dim=1).mean(),
            g.pow(2).sum(dim=1).mean(),
            (y_hat.argmax(dim=1) != y_tilde.argmax(dim=1)).to(g.dtype).mean(),
            s.mask.to(g.dtype).mean(),
        ]).detach()
        stats = comm.all_reduce_mean(stats)
        return {"loss": float(loss.detach()), "loss_labeled": float(loss_l.detach()),
                "loss_unlabeled": float(loss_u.detach()), "unlabeled_weight": float(s.weight),
                "label_correction": float(stats[0]), "meta_grad_norm": float(stats[1].sqrt()),
                "label_flip_fraction": float(stats[2]), "mask_fraction": float(stats[3]),
                "clipped_fraction": clipped, "meta_lr": float(beta)}
