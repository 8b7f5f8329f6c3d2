"""Per-sample weights and label projections that several meta methods share."""
from __future__ import annotations

import torch


def sign_weights(directional: torch.Tensor) -> torch.Tensor:
    """Meta-Semi Eq. 9: w_j = 1 where the meta-gradient -alpha <grad G, grad L_j> <= 0, i.e.
    where the directional derivative <grad G, grad L_j> >= 0 (a tie keeps the sample; the step
    size alpha > 0 does not change the sign). [N] -> [N] float 0/1."""
    return (directional >= 0).to(directional.dtype)


def positive_part_weights(directional: torch.Tensor) -> torch.Tensor:
    """Learning to Reweight (Ren et al. 2018, Eq. 3-4) before its normalisation: w_j =
    max(<grad G, grad L_j>, 0), the clipped negative meta-gradient of one virtual step at eps =
    0 divided by the step size (which the normalisation cancels). [N] -> [N], detached."""
    return directional.detach().clamp(min=0)


def clip_to_simplex(y: torch.Tensor, fallback: torch.Tensor | None = None) -> torch.Tensor:
    """Label rows back onto the probability simplex: negatives -> 0, each row divided by its
    sum (the official Meta-Gradient SSL code; not the Euclidean projection). A row with
    nothing left takes ``fallback``'s row (uniform when None). y [B, C] -> [B, C]."""
    y = y.clamp(min=0)
    total = y.sum(dim=1, keepdim=True)
    if fallback is None:
        fallback = torch.full_like(y, 1.0 / y.shape[1])
    return torch.where(total > 0, y / total.clamp(min=torch.finfo(y.dtype).tiny), fallback)
