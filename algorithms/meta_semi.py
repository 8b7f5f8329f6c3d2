"""Meta-Semi (Wang et al., paper 002): 0/1 weights on pseudo-labeled samples from the sign
of their meta-gradient on the labeled loss.

Per iteration (Alg. 1 lines 3-13, Eq. 9-13; App. B Eq. 31-38, 52):
1. soft pseudo-labels y_hat_j = softmax(f_EMA(u_j)) from an EMA of the weights (Sec. 3.3);
2. X_tilde = MixUp(X, Shuffle(X), lam1) (Eq. 12) and U_tilde = MixUp(W, Shuffle(W), lam2)
   with W = Concat(X, U), one-hot labels for X and soft pseudo-labels for U (Eq. 13),
   lam ~ Beta(beta, beta) — beta is the only hyperparameter beyond supervised training
   (Alg. 1 line 4);
3. the meta-objective G is the cross-entropy on the mixed labeled batch X_tilde (Alg. 1 lines
   9-10; App. B: the weights of Eq. 38 are set by grad G(X_tilde, theta_t)); the meta-gradient
   of sample j of U_tilde is -alpha <grad G(X_tilde, theta), grad L_j(theta)> (Eq. 10; by
   Proposition 1 one virtual step gives the same signs as M steps), so w_j = 1 where
   <grad G, grad L_j> >= 0 and 0 elsewhere (Eq. 9, line 11); the step size alpha > 0 does not
   change the sign and the virtual step is never materialised;
4. the update is on L_meta = sum_j w_j L_j / sum_j w_j alone (line 12-13; Eq. 29 and Eq. 52:
   Delta theta = -alpha grad F(X_tilde, U_tilde, theta)), 0 if no w_j = 1. X_tilde enters
   only through G; the labeled samples are trained on inside U_tilde (W contains X).

Options (``meta_objective``, ``labeled_weight``): ``clean`` computes G on the un-mixed X,
and ``labeled_weight`` > 0 adds w CE(X_tilde) to L_meta; the suite's version before it
followed the algorithm box was ``clean`` with ``labeled_weight`` 1.

``weight_rule = l2rw``: Learning to Reweight's weights (Ren et al. 2018, Eq. 3-4) in this
pipeline, which is how 002 ran its "Learning to Reweight" baseline (App. D: "we retain our
approach of generating pseudo-labeled samples, but use their reweighting strategy"):
r_j = max(<grad G, grad L_j>, 0), L_meta = sum_j r_j L_j / sum_j r_j (0 if every r_j = 0).
002 Table 1's row runs as the registered ``meta_semi_l2rw`` (:mod:`algorithms.meta_semi_l2rw`).

Meta-Semi + ICT (Eq. 14; Tables 1-2, 6): L = L_meta + w L_consistency with ICT's
interpolation consistency (Verma et al. 2019) as L_consistency and w = ``ict_weight``
(0 = off, the default: then none of the following runs and no generator draw is added).
The teacher: ICT's is an EMA of the student's weights (decay 0.999), and Meta-Semi already
keeps one (``self.ema``, decay 0.999 in the paper) for its pseudo-labels, so the
pseudo-labels y_hat = softmax(f_EMA(u)) of step 1 serve as ICT's teacher predictions (same
view u, eval mode as for the pseudo-labels; ICT's own code runs its teacher in train mode).
On the global batch, after Meta-Semi's draws: lam3 ~ Beta(ict_alpha, ict_alpha) and a
permutation pi, u_ict = lam3 u + (1 - lam3) u[pi], z = lam3 y_hat + (1 - lam3) y_hat[pi];
L_consistency = mean_j ||softmax(f_theta(u_ict_j)) - z_j||^2, the squared error summed over
classes (the suite's ``ict`` convention; ICT's w, on the class-averaged error, is C times this
one). w is constant, as Eq. 14 writes it (ICT ramps its weight up; not done here). The
student sees [X_tilde if labeled_weight > 0], U_tilde and u_ict in one forward.

Passes per iteration: the EMA model's forward on U; one functional forward + backward on the
G batch (v = grad G); one forward-mode pass (``jvp``) or two forwards (``fd``) on U_tilde; the
training forward and backward.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F

from . import losses
from .base import Algorithm, Batch, LossTerms
from .ema import WeightEMA
from .hparams import method_field, require
from .meta import directional_derivatives, global_loss_gradient, positive_part_weights, sign_weights
from .mixup import mixup
from .registry import register


@dataclass
class MetaSemiHparams:
    """beta: MixUp's Beta(beta, beta) (the paper selects it in [0.2, 1] on validation);
    ema_decay: decay of the weight EMA that makes the pseudo-labels (0.999 in the paper;
    short budgets want less); meta_method: ``jvp`` (exact directional derivative) or ``fd``
    (central finite difference); meta_bn: BatchNorm mode of the meta pass.
    ict_weight: w of Eq. 14 ("Meta-Semi + ICT"), 0 = off. 002 Fig. 3 varies ICT's w among
    ICT's recommended candidates (the values are in the figure, not in the extracted text);
    when on, search it like the suite's ``ict`` lambda_u, [0.1, 100] log scale, same distance
    convention (ICT's CIFAR-10 setting 100 on the class-averaged error is 10 here). Not declared
    as a search range because the default 0 (off) lies outside it. ict_alpha: ICT's MixUp
    Beta(alpha, alpha) (1.0 in ICT's CIFAR-10 runs, the suite's ``ict`` default; search
    [0.1, 2.0] log as there).
    meta_objective: the batch G is computed on, ``mixed`` (X_tilde, Alg. 1 lines 9-10, App. B
    Eq. 38) or ``clean`` (X). labeled_weight: weight of CE(X_tilde) added to L_meta (0: the
    update is L_meta alone, Alg. 1 line 13, Eq. 52). weight_rule: ``sign`` (Meta-Semi, Eq. 9)
    or ``l2rw`` (Learning to Reweight's max(<grad G, grad L_j>, 0), 002 App. D)."""

    beta: float = field(default=0.5, metadata={"range": (0.1, 1.0), "scale": "linear"})
    ema_decay: float = 0.999
    meta_method: Literal["jvp", "fd"] = method_field("jvp", {"jvp": "first", "fd": "first"})
    meta_bn: Literal["train", "eval"] = "train"
    ict_weight: float = 0.0
    ict_alpha: float = 1.0
    meta_objective: Literal["mixed", "clean"] = "mixed"
    labeled_weight: float = 0.0
    weight_rule: Literal["sign", "l2rw"] = "sign"

    def validate(self) -> None:
        require(self.beta > 0, "meta_semi beta must be > 0")
        require(0.0 <= self.ema_decay < 1.0, "meta_semi ema_decay must be in [0, 1)")
        require(self.ict_weight >= 0, "meta_semi ict_weight must be >= 0")
        require(self.ict_alpha > 0, "meta_semi ict_alpha must be > 0")
        require(self.labeled_weight >= 0, "meta_semi labeled_weight must be >= 0")


@register
class MetaSemi(Algorithm[MetaSemiHparams]):
    """Meta-Semi with EMA soft pseudo-labels and MixUp; see the module docstring."""

    name = "meta_semi"
    #: kept_fraction: share of U_tilde with a nonzero weight (w_j = 1, or r_j > 0 for l2rw)
    diagnostics = ('kept_fraction', 'loss_meta', 'loss_ict')  # results columns diag_<name>
    paper_hps = 1  # beta (002 Table 2)
    # EMA-teacher pseudo-labels + MixUp of labeled and unlabeled inputs, as ICT: its cost without the meta step
    cost_reference = "ict"
    tasks_note = "its EMA soft pseudo-labels are class distributions and its MixUp mixes label distributions (002 Sec. 3)"
    description = "Meta-Semi: keep pseudo-labeled samples whose meta-gradient is <= 0"
    not_composable_because = "it is already a meta method; compose a base with the meta_semi rule instead (e.g. pseudo_label+meta_semi)"

    def __init__(self, model, hp, ctx) -> None:
        super().__init__(model, hp, ctx)
        self.ema = WeightEMA(model, hp.ema_decay)

    def mixed_batches(self, batch: Batch) -> tuple[torch.Tensor, ...]:
        """Global X, X_tilde and U_tilde with their targets; pseudo-labels computed on shards.

        Returns (x_l [B_l, ...], y_onehot [B_l, C], x_mix [B_l, ...], y_mix [B_l, C],
        u_mix [B_l + B_u, ...], u_targets [B_l + B_u, C]), identical on every worker.
        """
        return self._draws(batch)[:6]

    def _draws(self, batch: Batch) -> tuple[torch.Tensor, ...]:
        """:meth:`mixed_batches`' six tensors, then the augmented unlabeled batch u [B_u, ...]
        and its pseudo-labels y_hat [B_u, C] (also ICT's teacher predictions)."""
        comm, g, c = self.ctx.comm, self.ctx.generator, self.ctx.num_classes
        x_l = self.ctx.augment(batch.x_l, g)
        x_u = self.ctx.augment(batch.x_u, g)
        y_l = F.one_hot(batch.y_l, c).to(x_l.dtype)
        with torch.no_grad():
            self.ema.model.eval()
            y_hat = comm.all_gather(F.softmax(self.ema.model(comm.shard(x_u)), dim=1))
        x_mix, y_mix, _, _ = mixup(x_l, y_l, self.hp.beta, g)
        u_mix, u_targets, _, _ = mixup(torch.cat([x_l, x_u]), torch.cat([y_l, y_hat]), self.hp.beta, g)
        return x_l, y_l, x_mix, y_mix, u_mix, u_targets, x_u, y_hat

    def ict_batch(self, x_u: torch.Tensor, y_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ICT's mixed inputs and targets on the global batch, drawn from the shared generator:
        x_u [B_u, ...], y_hat [B_u, C] -> (u_ict [B_u, ...], z [B_u, C])."""
        u_ict, z, _, _ = mixup(x_u, y_hat, self.hp.ict_alpha, self.ctx.generator)
        return u_ict, z

    def raw_weights(self, d: torch.Tensor) -> torch.Tensor:
        """Unnormalised weights r_j [b] from the directional derivatives d_j = <grad G, grad L_j>
        [b]: Eq. 9's 0/1 signs or Learning to Reweight's max(d_j, 0); L_meta = sum r L / sum r."""
        return sign_weights(d) if self.hp.weight_rule == "sign" else positive_part_weights(d)

    def loss_terms(self, batch: Batch, step: int) -> LossTerms:
        comm, hp = self.ctx.comm, self.hp
        draws = self._draws(batch)
        ict_on = hp.ict_weight > 0
        if ict_on:  # only then, so a default run's generator draws and forward are those without ICT
            u_ict, z_ict = (comm.shard(t) for t in self.ict_batch(draws[6], draws[7]))
        x_l, y_l, x_mix, y_mix, u_mix, u_targets = (comm.shard(t) for t in draws[:6])
        # v = grad G, averaged over workers so every shard is weighed against the global direction.
        g_x, g_y = (x_mix, y_mix) if hp.meta_objective == "mixed" else (x_l, y_l)
        v = global_loss_gradient(self.model, losses.soft_cross_entropy, g_x, g_y, hp.meta_bn, comm)
        d = directional_derivatives(self.model, losses.soft_cross_entropy, u_mix, u_targets, v, hp.meta_bn,
                                    hp.meta_method)
        r = self.raw_weights(d)
        total, kept = comm.all_reduce_sum(torch.stack([r.sum(), (r > 0).to(r.dtype).sum()])).unbind()
        n_global = r.shape[0] * comm.world_size
        with_labeled = hp.labeled_weight > 0
        parts = ([x_mix] if with_labeled else []) + [u_mix] + ([u_ict] if ict_on else [])
        logits = self.model(torch.cat(parts))
        n_l = x_mix.shape[0] if with_labeled else 0
        n_um = u_mix.shape[0]
        per_u = losses.soft_cross_entropy(logits[n_l:n_l + n_um], u_targets)
        # sum_j r_j L_j / sum_j r_j over the global batch, as this worker's share of a mean over workers.
        loss_u = (r * per_u).sum() * comm.world_size / torch.where(total > 0, total, 1.0)
        if with_labeled:
            loss_l = hp.labeled_weight * losses.soft_cross_entropy(logits[:n_l], y_mix).mean()
        else:
            loss_l = torch.zeros((), dtype=per_u.dtype, device=per_u.device)
        diag = {"kept_fraction": kept.double() / n_global}  # tensors throughout: the step reads nothing
        if ict_on:  # Eq. 14: L_meta + w L_consistency
            loss_ict = losses.softmax_squared_error(logits[n_l + n_um:], z_ict).mean()
            diag.update(loss_meta=loss_u.detach(), loss_ict=loss_ict.detach())
            loss_u = loss_u + hp.ict_weight * loss_ict
        return LossTerms(loss_l, loss_u, 1.0, diag)

    def after_step(self, step: int) -> None:
        self.ema.update(self.model)

    def state_dict(self) -> dict:
        return {"ema": self.ema.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.ema.load_state_dict(state["ema"])
