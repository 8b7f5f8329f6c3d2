"""MixUp (Zhang et al. 2018) on a global batch, drawn from a shared generator."""
from __future__ import annotations

import numpy as np
import torch

from .host import host_values


def sample_beta(alpha: float, generator: torch.Generator) -> float:
    """lambda ~ Beta(alpha, alpha), drawn from ``generator`` so that every worker draws the same.

    torch's Beta sampler takes no generator, so one integer drawn from the shared torch
    generator seeds a numpy draw; alpha <= 0 means no mixing (lambda = 1).
    """
    if alpha <= 0:
        return 1.0
    seed = host_values(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))[0]
    return float(np.random.default_rng(seed).beta(alpha, alpha))


def mixup(x: torch.Tensor, y: torch.Tensor, alpha: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, float, torch.Tensor]:
    """Mix a batch with a shuffled copy of itself.

    x [B, ...], y [B, C] (probabilities) -> (lam x + (1-lam) x[perm], lam y + (1-lam) y[perm], lam, perm).
    lambda ~ Beta(alpha, alpha) as in Meta-Semi Eq. 12-13 (no max(lam, 1-lam)).
    """
    lam = sample_beta(alpha, generator)
    perm = torch.randperm(x.shape[0], generator=generator, device=generator.device)
    perm = perm.to(x.device)
    return lam * x + (1 - lam) * x[perm], lam * y + (1 - lam) * y[perm], lam, perm
