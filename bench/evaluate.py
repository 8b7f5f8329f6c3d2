"""Error rate and cross-entropy of a model on a labeled set, split over workers."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from algorithms import Comm


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, comm: Comm, batch_size: int = 1024) -> tuple[float, float]:
    """(error rate, mean cross-entropy) of ``model`` in eval mode on x [N, ...], y [N].

    Each worker evaluates its contiguous slice; sums are all-reduced.
    """
    was = model.training
    model.eval()
    idx = torch.tensor_split(torch.arange(x.shape[0]), comm.world_size)[comm.rank]
    wrong = torch.zeros((), dtype=torch.float64, device=x.device)
    loss = torch.zeros((), dtype=torch.float64, device=x.device)
    for chunk in idx.split(batch_size):
        logits = model(x[chunk])
        wrong += (logits.argmax(1) != y[chunk]).sum()
        loss += F.cross_entropy(logits.float(), y[chunk], reduction="sum").double()
    model.train(was)
    totals = comm.all_reduce_sum(torch.stack([wrong, loss]))
    n = max(1, x.shape[0])
    return float(totals[0]) / n, float(totals[1]) / n
