"""A model's metric and loss on a labeled set, split over workers: the error rate and cross-entropy
for classification, the normalised landmark error and squared error for regression (the run's task)."""
from __future__ import annotations

import torch

from algorithms import Comm
from algorithms.task import ClassificationTask, Task


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, comm: Comm, task: Task | None = None,
             batch_size: int = 1024) -> tuple[float, float]:
    """(metric, mean loss) of ``model`` in eval mode on x [N, ...], y [N] (or [N, K]): the error rate and
    cross-entropy for classification, the normalised landmark error (a fraction) and the squared error in
    output units for regression (``task``; classification if None).

    Each worker evaluates its contiguous slice; sums are all-reduced.
    """
    task = task or ClassificationTask()
    was = model.training
    model.eval()
    idx = torch.tensor_split(torch.arange(x.shape[0]), comm.world_size)[comm.rank]
    metric = torch.zeros((), dtype=torch.float64, device=x.device)
    loss = torch.zeros((), dtype=torch.float64, device=x.device)
    for chunk in idx.split(batch_size):
        m, l = task.eval_sums(model(x[chunk]), y[chunk])
        metric += m
        loss += l
    model.train(was)
    totals = comm.all_reduce_sum(torch.stack([metric, loss]))
    n = max(1, x.shape[0])
    return float(totals[0]) / n, float(totals[1]) / n
