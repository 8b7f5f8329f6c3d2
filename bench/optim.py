"""The optimizer and learning-rate schedule of a run, from its typed config."""
from __future__ import annotations

import math

import torch

from .config import RunConfig


def make_optimizer(model: torch.nn.Module, cfg: RunConfig) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """SGD (Nesterov) or Adam with linear warm-up then cosine-to-zero, constant, or step decay
    (x ``gamma`` at each of ``milestones``, counted in steps from the start of the run).
    ``foreach`` everywhere: bit for bit the per-tensor loop on CPU, where torch would not pick it."""
    o = cfg.optim
    if o.name == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=o.lr, momentum=o.momentum, nesterov=o.nesterov and o.momentum > 0,
                              weight_decay=o.weight_decay, foreach=True)
    elif o.name == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=o.lr, weight_decay=o.weight_decay, foreach=True)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=o.lr, weight_decay=o.weight_decay, foreach=True)

    def factor(step: int) -> float:
        if o.warmup_steps and step < o.warmup_steps:
            return (step + 1) / o.warmup_steps
        if o.schedule == "cosine":
            t = (step - o.warmup_steps) / max(1, cfg.steps - o.warmup_steps)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))
        if o.schedule == "step":
            return o.gamma ** sum(step >= m for m in o.milestones)
        return 1.0

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)
