"""Per-sample losses (the distances d of the imputer/distance view). All return shape [B]."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """-sum_c t_c log softmax(logits)_c. logits [B, C], targets [B, C] (rows sum to 1) -> [B]."""
    return -(targets * F.log_softmax(logits, dim=1)).sum(dim=1)


def hard_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy with integer labels. logits [B, C], labels int64 [B] -> [B]."""
    return F.cross_entropy(logits, labels, reduction="none")


def softmax_squared_error(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """||softmax(logits) - targets||^2 summed over classes. logits, targets [B, C] -> [B].

    Mean Teacher's and L2I's consistency distance; ``targets`` are probabilities.
    """
    return (F.softmax(logits, dim=1) - targets).pow(2).sum(dim=1)


DISTANCES = {
    "soft_ce": soft_cross_entropy,
    "softmax_mse": softmax_squared_error,
}


def confident_one_hot(logits: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Hard pseudo-labels: one-hot argmax of softmax(logits) (detached) and the mask
    max softmax >= threshold. logits [B, C] -> (targets [B, C], mask [B])."""
    probs = F.softmax(logits.detach(), dim=1)
    conf, label = probs.max(dim=1)
    return F.one_hot(label, probs.shape[1]).to(probs.dtype), (conf >= threshold).to(probs.dtype)
