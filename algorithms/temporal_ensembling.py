"""Temporal ensembling (Laine & Aila 2017, "Temporal Ensembling for Semi-Supervised Learning", Sec. 2.2, Alg. 2)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F

from . import losses
from .base import Batch, BaseMethod, StepInputs
from .hparams import require
from .host import host_values
from .registry import register


@dataclass
class TemporalEnsemblingHparams:
    """alpha: momentum of the per-sample ensemble Z <- alpha Z + (1 - alpha) z (0.6 in the paper);
    lambda_u: consistency weight w_max on the class-SUMMED squared error of softmaxes. The paper
    averages over the C classes and uses w_max = 30 for temporal ensembling, so 30 / C = 3 here
    for C = 10; its code also multiplies w_max by M / N (labeled / all training inputs), which is
    not applied here. rampup: Gaussian ``sigmoid`` ramp exp(-5 (1 - t)^2) over ``rampup_fraction``.
    """

    alpha: float = field(default=0.6, metadata={"range": (0.0, 0.99), "scale": "linear"})
    lambda_u: float = field(default=3.0, metadata={"range": (0.1, 100.0), "scale": "log"})
    rampup_fraction: float = field(default=0.4, metadata={"range": (0.0, 0.8), "scale": "linear"})
    rampup: Literal["linear", "sigmoid", "none"] = "sigmoid"

    def validate(self) -> None:
        require(0.0 <= self.alpha < 1.0, "temporal_ensembling alpha must be in [0, 1)")
        require(self.lambda_u >= 0, "temporal_ensembling lambda_u must be >= 0")
        require(0.0 <= self.rampup_fraction <= 1.0, "temporal_ensembling rampup_fraction must be in [0, 1]")


@register
class TemporalEnsembling(BaseMethod[TemporalEnsemblingHparams]):
    """psi = bias-corrected ensemble Z_i / (1 - alpha^t_i) of the sample's past predictions
    (detached); d = ||softmax(f_theta(T(x_u))) - z||^2 summed over classes; lambda(t) =
    lambda_u * exp(-5 (1 - t)^2) ramp-up.

    State: Z [num_unlabeled, C] and counts t [num_unlabeled] over the unlabeled pool, indexed by
    ``Batch.u_idx`` (global pool positions). The paper accumulates a whole epoch of predictions
    and updates Z once per epoch with a global epoch counter t; with random minibatches the
    faithful analogue is an update per visit with a per-sample count t_i, which keeps Z_i / (1 -
    alpha^t_i) an exactly normalised weighted average of sample i's past predictions.

    Per step: targets are read from Z (predictions of earlier visits only, as in the paper,
    where z~ is fixed during an epoch); samples never visited before have no target and get
    mask 0. The step's softmax predictions on the student's (weak) view are all-gathered, so
    every worker holds the same Z, and committed in :meth:`after_step` (so that extra calls of
    :meth:`prepare`, e.g. by meta rules, do not advance the ensemble). A sample present twice
    in a batch is updated once per occurrence, in batch order.

    With ``u_idx`` None the caller has no pool: x_u is then taken to be the whole pool in a
    fixed order (position i is sample i), e.g. full-batch training.
    """

    name = "temporal_ensembling"
    paper_hps = 2  # tunable hyperparameters the papers count: w_max, alpha
    needs_teacher_view = False
    description = "temporal ensembling: squared error to an EMA of each sample's past predictions"

    def __init__(self, model, hp, ctx) -> None:
        super().__init__(model, hp, ctx)
        self.Z: torch.Tensor | None = None  # [pool, C] unnormalised EMA of softmax predictions
        self.count: torch.Tensor | None = None  # [pool] int64 updates per sample
        self._idx: torch.Tensor | None = None  # global pool indices of the current batch
        self._pending: tuple[torch.Tensor, torch.Tensor] | None = None  # (idx [B_u], probs [B_u, C])

    # -- state ------------------------------------------------------------------------
    def _ensure_pool(self, size: int, device: torch.device, dtype: torch.dtype) -> None:
        size = max(size, self.ctx.num_unlabeled)
        c = self.ctx.num_classes
        if self.Z is None:
            self.Z = torch.zeros(size, c, device=device, dtype=dtype)
            self.count = torch.zeros(size, dtype=torch.long, device=device)
        if self.Z.device != device or self.Z.dtype != dtype:
            self.Z = self.Z.to(device=device, dtype=dtype)
            self.count = self.count.to(device)
        if self.Z.shape[0] < size:  # a caller without num_unlabeled: grow on demand
            extra = size - self.Z.shape[0]
            self.Z = torch.cat([self.Z, self.Z.new_zeros(extra, c)])
            self.count = torch.cat([self.count, self.count.new_zeros(extra)])

    def pool_indices(self, batch: Batch) -> torch.Tensor:
        """Global pool positions of x_u [B_u] int64, on the host (the sampler's indices: their
        duplicates and maximum are then read without waiting for the device)."""
        if batch.u_idx is None:
            return torch.arange(batch.x_u.shape[0])
        return batch.u_idx.to(dtype=torch.long)

    def ensemble_targets(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(bias-corrected targets [b, C], mask [b]) of pool samples ``idx``; unseen samples get
        target 0 and mask 0."""
        t = self.count[idx]
        seen = t > 0
        denom = 1.0 - self.hp.alpha ** t.to(self.Z.dtype)
        targets = torch.where(seen[:, None], self.Z[idx] / denom.clamp(min=1e-12)[:, None], torch.zeros_like(self.Z[idx]))
        return targets, seen.to(self.Z.dtype)

    def update_ensemble(self, idx: torch.Tensor, probs: torch.Tensor) -> None:
        """Z_i <- alpha Z_i + (1 - alpha) p_i and t_i += 1 for every (i, p_i), duplicates in order."""
        a = self.hp.alpha
        if torch.unique(idx).numel() == idx.numel():  # idx on the host: no device read
            idx = idx.to(self.Z.device)
            self.Z[idx] = a * self.Z[idx] + (1 - a) * probs.to(self.Z.dtype)
            self.count[idx] += 1
            return
        for i, p in zip(host_values(idx), probs):  # duplicates in order (rare: tiny pools)
            self.Z[i] = a * self.Z[i] + (1 - a) * p.to(self.Z.dtype)
            self.count[i] += 1

    # -- the base-method pieces -----------------------------------------------------
    def distance(self, logits_u: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return losses.softmax_squared_error(logits_u, targets)

    def prepare(self, batch: Batch, step: int) -> StepInputs:
        self._idx = self.pool_indices(batch)
        return super().prepare(batch, step)

    @torch.no_grad()
    def impute(self, x_u_teacher, logits_u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        comm = self.ctx.comm
        host_idx = self._idx
        probs = F.softmax(logits_u.detach(), dim=1)
        size = host_values(host_idx.max()) + 1 if host_idx.numel() else 0
        self._ensure_pool(size, probs.device, probs.dtype)
        targets, mask = self.ensemble_targets(comm.shard(host_idx.to(logits_u.device)))
        self._pending = (host_idx, comm.all_gather(probs))
        return targets, mask

    def after_step(self, step: int) -> None:
        if self._pending is not None:
            self.update_ensemble(*self._pending)
            self._pending = None

    def state_dict(self) -> dict:
        if self.Z is None:
            return {"Z": None, "count": None}
        return {"Z": self.Z.detach().clone(), "count": self.count.clone()}

    def load_state_dict(self, state: dict) -> None:
        z, count = state.get("Z"), state.get("count")
        self.Z = None if z is None else z.detach().clone()
        self.count = None if count is None else count.clone().long()
        self._pending = None
