"""Meta-Gradient SSL (paper 003, "Semi-Supervised Learning with Meta-Gradient") as a meta rule.

Not to be confused with Meta-Semi (paper 002, ``meta_semi``): the official code of *this*
method calls itself "MetaSemi", but it is paper 003.

Per step (Alg. 1-2, Eq. 5-13), on the base's StepInputs ``s``:

1. pseudo-labels y_tilde [b_u, C]: the base's imputation ``s.targets`` (``meta_grad_init =
   "base"``, the point of composing) or the student's own softmax (``"model"``, Eq. 2);
2. the label meta-gradient g_i = -alpha d/dy_i <v, grad_theta l_i(theta, y_i)> (Eq. 7-8),
   v = grad_theta L_l (global labeled gradient), alpha the current lr, l_i the base mask times
   the distance. Since d/dy <v, grad_theta l> = D_v (dl/dy), it is one directional derivative
   of the [b_u, C] map theta -> dl/dy: ``jvp`` (exact first order) or ``fd`` (Eq. 10-11,
   central difference). ``exact`` differentiates L_l(theta - alpha grad L_u(theta, y)) w.r.t.
   y through a virtual SGD step (Alg. 1, second order);
3. y_hat = clip_to_simplex(y_tilde - beta_t g), beta_t = ``meta_lr`` (or the lr);
4. loss = mean KL(y_in || softmax f(x_in)) + lambda(t) mean mask ||softmax f(x_u) - y_hat||^2,
   with cross-domain MixUp x_in = lam x_l + (1 - lam) x_u, lam_i ~ Beta(gamma, gamma) per pair
   (Eq. 12), on the global batch so W workers mix exactly as one; ``use_mixup = False`` is
   Table 4's "meta only", ``meta_method = "none"`` its "mixup only". A base that masks
   samples (a confidence threshold) gets no meta step for them (g_i = 0 through the mask), so
   its mask also applies in the MixUp (``mixup_mask = base``): the unlabeled partner's share
   becomes m_i (1 - lam_i), i.e. lam_i' = 1 - m_i (1 - lam_i), and a masked-out sample never
   enters the mixed batch (its pair is the labeled sample alone); 003 has no mask (with a
   mask of ones this is Eq. 12), ``none`` mixes every unlabeled sample as before.

Passes: ``fd``: v = grad L_l (one forward and backward), two perturbed forwards; ``jvp``: one
forward-mode pass instead; ``exact``: the unlabeled forward and backward (the virtual step,
no graph kept), the labeled forward and backward at the virtual step (v* = grad L_l(theta*)),
one forward-mode pass over the unlabeled batch (forward over reverse: exactly Alg. 1's
second-order gradient, without a double backward; ``label_gradient.one_step_label_gradient``),
i.e. jvp's passes with v taken at theta* plus the virtual step's forward and backward, which
is its floor; then the training forwards (the base's,
and the mixed batch's, which is built after the consistency term's backward freed the base's
graph: ``LossTerms.deferred_labeled``) and their backward. The first-order floor (``floor_passes``) is v's
forward and backward over the labeled batch, the two perturbed unlabeled forwards (``fd``) or
the forward-mode pass (``jvp``), and the mixed batch's forward and backward (Eq. 12: a batch
the base never sees, so no base pass can stand in for it).

Why g is scaled per sample (B_u times Eq. 8), how ``meta_lr = 1`` reproduces the official
update, and the other choices: docs/methods.md, "Meta-Gradient SSL".
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal

import numpy as np
import torch
import torch.nn.functional as F

from .. import losses
from ..base import Batch, LossTerms, StepInputs
from ..hparams import method_field, require
from ..host import host_values
from ..meta import directional_derivatives, functional_forward, global_loss_gradient, label_meta_gradient, parameters_of
from ..meta.functional import has_batchnorm, squared_norm
from ..meta.rule import LossRule, StepInfo, register_rule
from ..meta.weights import clip_to_simplex


@dataclass
class MetaGradHparams:
    """Meta-Gradient SSL (paper 003, Alg. 1-2, Eq. 5-13).

    meta_lr: beta_t, step size of the pseudo-labels (Eq. 6); 1.0 reproduces the official
    code's update (docs/methods.md). meta_lr_from_lr: beta_t = current lr instead.
    meta_method: ``fd`` (Alg. 2, central finite difference Eq. 10), ``jvp`` (exact first
    order), ``exact`` (Alg. 1, through the virtual SGD step), ``none`` (no meta step).
    meta_grad_fd_divisor: ``2eps`` (central difference) or ``eps`` (official code, 2x).
    meta_grad_eps_scale: eps = scale / ||grad L_l|| (0.01, Eq. 10 after Liu et al. 2018).
    meta_bn: BN mode of the meta pass (official: eval; functional passes never update the
    running statistics). meta_grad_init: y_tilde from the base's imputation or the
    model's softmax (Eq. 2). meta_grad_loss: ``mse`` (Eq. 13) or the base's distance.
    use_mixup / mixup_gamma: cross-domain MixUp, lam ~ Beta(gamma, gamma) (Eq. 12; official:
    0.1 on SVHN, 1.0 on CIFAR). mixup_mask: ``base`` (the base's mask scales each unlabeled
    partner's share of its mixed pair, so masked samples stay out of the MixUp as they stay
    out of the meta step) or ``none`` (every unlabeled sample mixed unmasked).
    """

    renamed = {"meta_grad_method": "meta_method", "meta_grad_bn": "meta_bn"}

    meta_lr: float = field(default=1.0, metadata={"range": (0.05, 10.0), "scale": "log"})
    meta_lr_from_lr: bool = False
    meta_method: Literal["fd", "jvp", "exact", "none"] = method_field(
        "fd", {"fd": "first", "jvp": "first", "exact": "second", "none": None})
    meta_grad_fd_divisor: Literal["2eps", "eps"] = "2eps"
    meta_grad_eps_scale: float = 0.01
    meta_bn: Literal["train", "eval"] = "eval"
    meta_grad_init: Literal["base", "model"] = "base"
    meta_grad_loss: Literal["mse", "base"] = "mse"
    use_mixup: bool = True
    mixup_gamma: float = field(default=1.0, metadata={"range": (0.1, 1.0), "scale": "linear"})
    mixup_mask: Literal["base", "none"] = "base"

    def validate(self) -> None:
        require(self.meta_lr >= 0, "meta_grad meta_lr must be >= 0")
        require(self.meta_grad_eps_scale > 0, "meta_grad meta_grad_eps_scale must be > 0")
        require(self.mixup_gamma > 0, "meta_grad mixup_gamma must be > 0")


def sample_betas(gamma: float, n: int, generator: torch.Generator) -> np.ndarray:
    """n i.i.d. draws of Beta(gamma, gamma) from the shared generator (one torch draw seeds a
    numpy sampler, as :func:`algorithms.mixup.sample_beta`), identical on every worker. -> [n]."""
    seed = host_values(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))[0]
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


@dataclass
class MetaGradStep:
    """The meta step's result: labeled targets, pseudo-labels before and after, g."""

    y_l: torch.Tensor  # [b_l, C]
    y_tilde: torch.Tensor  # [b_u, C]
    y_hat: torch.Tensor  # [b_u, C]
    g: torch.Tensor  # [b_u, C]
    clipped: torch.Tensor | float  # global fraction of entries clipped at 0
    beta: float


@register_rule
class MetaGrad(LossRule[MetaGradHparams]):
    """Meta-Gradient SSL: pseudo-labels moved along the meta-gradient of the labeled loss
    after one virtual SGD step, then cross-domain MixUp; see the module docstring."""

    name = "meta_grad"
    diagnostics = ('label_correction', 'meta_grad_norm', 'label_flip_fraction', 'mask_fraction', 'clipped_fraction', 'meta_lr')  # results columns diag_<name>
    description = "Meta-Gradient SSL: pseudo-labels updated by the labeled loss's meta-gradient, cross-domain MixUp"
    paper_hps = 2  # the meta learning rate beta_t and MixUp's gamma (003 Alg. 1-2)
    tasks_note = ("its meta-gradient moves soft pseudo-labels on the class simplex (003 Eq. 7-11, clipped back onto it) "
                  "and its cross-domain MixUp mixes class distributions: classification only")
    floor_passes = {
        "fd": (("forward_backward", "labeled"), ("forward", "unlabeled"), ("forward", "unlabeled"),
               ("forward_backward", "mixed")),
        "jvp": (("forward_backward", "labeled"), ("jvp", "unlabeled"), ("forward_backward", "mixed")),
        "exact": (("forward_backward", "unlabeled"), ("forward_backward", "labeled"), ("jvp", "unlabeled"),
                  ("forward_backward", "mixed"))}

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
        method = method or hp.meta_method
        dist = self.unlabeled_distance()
        mask = mask.detach()
        if method == "exact":
            def loss_u(p: dict[str, torch.Tensor], y: torch.Tensor) -> torch.Tensor:
                return (dist(functional_forward(model, p, x_u, hp.meta_bn), y) * mask).mean()

            def loss_l(p: dict[str, torch.Tensor]) -> torch.Tensor:
                return losses.soft_cross_entropy(functional_forward(model, p, x_l, hp.meta_bn), y_l).mean()

            # one virtual step: forward over reverse (label_gradient.one_step_label_gradient), no
            # second-order graph. On worker w it returns W dG/dy (G the global mean labeled loss);
            # times b_u = B_u / W undoes the 1/B_u of loss_u's mean
            gy, _ = label_meta_gradient(parameters_of(model), y_u, loss_u, loss_l, alpha, comm=comm)
            return gy * x_u.shape[0]
        v = global_loss_gradient(model, losses.soft_cross_entropy, x_l, y_l, hp.meta_bn, comm)
        flat = squared_norm(v.values()) == 0  # no labeled gradient: no correction (decided on the device)

        def dloss_dy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            # dl_i/dy_i [b, C]: closed form for the paper's MSE, else a function transform (jvp composes with it)
            if hp.meta_grad_loss == "mse":
                return 2 * (y - F.softmax(logits, dim=1)) * mask[:, None]
            return torch.func.grad(lambda yy: (dist(logits, yy) * mask).sum())(y)

        d = directional_derivatives(model, dloss_dy, x_u, y_u.detach(), v, hp.meta_bn, method,
                                    eps_scale=hp.meta_grad_eps_scale)
        if method == "fd" and hp.meta_grad_fd_divisor == "eps":
            d = 2 * d
        return torch.where(flat, torch.zeros_like(y_u), -alpha * d)

    def mixed_batch(self, s: StepInputs, y_l: torch.Tensor, y_hat: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """This worker's shard of the globally mixed batch: (x_in [n, ...], y_in [n, C], lam [N]),
        lam the labeled shares after the base's mask (``mixup_mask``)."""
        comm, g = self.algo.ctx.comm, self.algo.ctx.generator
        x_l, y_l_g = comm.all_gather(s.x_l.detach()), comm.all_gather(y_l.detach())
        x_u, y_u_g = comm.all_gather(s.x_u_student.detach()), comm.all_gather(y_hat.detach())
        n = max(x_l.shape[0], x_u.shape[0])
        lam = torch.as_tensor(sample_betas(self.hp.mixup_gamma, n, g), device=x_l.device)
        if self.hp.mixup_mask == "base":
            mask = comm.all_gather(s.mask.detach()).to(lam.dtype)
            lam = 1 - mask[torch.arange(n, device=lam.device) % x_u.shape[0]] * (1 - lam)
        x_in, y_in = cross_mixup(x_l, y_l_g, x_u, y_u_g, lam)
        return comm.shard(x_in), comm.shard(y_in), lam

    # -- the template's hooks ----------------------------------------------------------
    def meta_step_reads_student(self) -> bool:
        # y_tilde = the model's softmax reads the student's logits; eval-mode passes its BN statistics
        hp = self.hp
        return hp.meta_grad_init == "model" or (hp.meta_bn == "eval" and has_batchnorm(self.algo.model))

    def meta_step(self, s: StepInputs, batch: Batch, info: StepInfo) -> MetaGradStep:
        hp, comm = self.hp, self.algo.ctx.comm
        y_l = self.labeled_targets(s)
        y_tilde = F.softmax(s.logits_u.detach(), dim=1) if hp.meta_grad_init == "model" else s.targets.detach()
        alpha = info.lr
        beta = info.lr if hp.meta_lr_from_lr else hp.meta_lr
        if hp.meta_method != "none" and alpha != 0 and beta != 0:
            g = self.label_gradient(s.x_l, y_l, s.x_u_student, y_tilde, s.mask, alpha)
            raw = y_tilde - beta * g
            return MetaGradStep(y_l, y_tilde, clip_to_simplex(raw), g,
                                comm.all_reduce_mean((raw < 0).to(raw.dtype).mean()), beta)
        return MetaGradStep(y_l, y_tilde, y_tilde, torch.zeros_like(y_tilde), 0.0, beta)

    def loss_terms(self, s: StepInputs, meta: MetaGradStep, info: StepInfo) -> LossTerms:
        per_u = self.unlabeled_distance()(s.logits_u, meta.y_hat) * s.mask
        loss_u = per_u.mean()
        stats = self.label_statistics(s, meta)
        if self.hp.use_mixup:
            def mixed_loss() -> torch.Tensor:
                x_in, y_in, _ = self.mixed_batch(s, meta.y_l, meta.y_hat)
                return kl_divergence(self.algo.model(x_in), y_in).mean()

            # the MixUp batch's forward runs after the consistency term's backward freed the base's
            # graph: the two are never held together (the same update; peak memory ~ the base's)
            return LossTerms(None, loss_u, s.weight, stats, deferred_labeled=mixed_loss)
        return LossTerms(kl_divergence(s.logits_l, meta.y_l).mean(), loss_u, s.weight, stats)

    def label_statistics(self, s: StepInputs, meta: MetaGradStep) -> dict:
        """Global means over the unlabeled batch (equal shards): label_correction (L1 change of
        the pseudo-labels), meta_grad_norm (root mean ||g_i||^2), label_flip_fraction (argmax
        changed), mask_fraction, clipped_fraction, meta_lr (beta_t)."""
        g, y_hat, y_tilde = meta.g, meta.y_hat, meta.y_tilde
        stats = self.algo.ctx.comm.all_reduce_mean(torch.stack([
            (y_hat - y_tilde).abs().sum(dim=1).mean(),
            g.pow(2).sum(dim=1).mean(),
            (y_hat.argmax(dim=1) != y_tilde.argmax(dim=1)).to(g.dtype).mean(),
            s.mask.to(g.dtype).mean(),
        ]).detach())
        return {"label_correction": stats[0], "meta_grad_norm": stats[1].sqrt(), "label_flip_fraction": stats[2],
                "mask_fraction": stats[3], "clipped_fraction": meta.clipped, "meta_lr": float(meta.beta)}
