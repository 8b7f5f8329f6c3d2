"""The optimizer step every algorithm calls: backward, explicit gradient all-reduce, update."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .parallel import Comm


class Stepper:
    """Applies one update from a loss (or from gradients the algorithm computed itself).

    Gradients are averaged across workers with one flat all-reduce before the optimizer
    step, so every worker applies the same update and holds the same parameters (no DDP
    wrapper: meta rules take gradients with functional calls that DDP's hooks never see).
    Each worker's loss must be its contribution to the *global* mean (mean over its shard),
    which the average over workers then turns into the global mean.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                 scheduler: torch.optim.lr_scheduler.LRScheduler | None, comm: Comm) -> None:
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.comm = comm
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.updates = 0

    @property
    def lr(self) -> float:
        """Current learning rate of the first parameter group (alpha_t of the papers)."""
        return float(self.optimizer.param_groups[0]["lr"])

    def step(self, loss: torch.Tensor, advance_schedule: bool = True,
             optimizer: torch.optim.Optimizer | None = None) -> None:
        """Backward ``loss`` (scalar), average gradients over workers, take an optimizer step.

        ``advance_schedule=False`` leaves the lr schedule where it is: for methods whose one
        iteration takes two optimizer steps (L2I, 001 Alg. 1 lines 6 and 11). ``optimizer``:
        step with another optimizer over the same parameters (from :meth:`fresh_optimizer`;
        its lr is set to the schedule's current lr first) instead of the run's."""
        self.optimizer.zero_grad(set_to_none=False)
        loss.backward()
        self._finish(advance_schedule, optimizer)

    def step_in_stages(self, first: torch.Tensor, later: Callable[[], torch.Tensor]) -> torch.Tensor:
        """One optimizer step on ``first + later()``, with ``first`` backwarded before ``later``
        builds its graph: the two graphs are never alive together (the peak memory is the larger
        of the two, not their sum). Gradients add up as one backward of the sum would (each
        parameter receives the same two contributions, and a sum of two is order-free).
        Returns ``later()``'s value (scalar, its graph freed)."""
        self.optimizer.zero_grad(set_to_none=False)
        first.backward()
        second = later()
        second.backward()
        self._finish(True, None)
        return second

    def step_with_grads(self, grads: list[torch.Tensor | None], advance_schedule: bool = True,
                        optimizer: torch.optim.Optimizer | None = None) -> None:
        """Take an optimizer step with gradients given in ``model.parameters()`` order
        (``optimizer``: as in :meth:`step`)."""
        self.optimizer.zero_grad(set_to_none=False)
        for p, g in zip(self.params, grads):
            if g is None:
                continue
            if p.grad is None:  # zero_grad(set_to_none=False) does not create missing grads
                p.grad = g.detach().clone()
            else:
                p.grad.copy_(g)
        self._finish(advance_schedule, optimizer)

    def fresh_optimizer(self) -> torch.optim.Optimizer:
        """An optimizer of the run's class and settings over the same parameters, with its own
        (empty) state: for a second update per iteration that must not share the first's
        moments (e.g. Adam's running averages of a different objective's gradients)."""
        return type(self.optimizer)(self.params, **self.optimizer.defaults)

    def _finish(self, advance_schedule: bool, optimizer: torch.optim.Optimizer | None) -> None:
        for p in self.params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        if self.comm.world_size > 1:
            flat = torch.cat([p.grad.reshape(-1) for p in self.params])
            flat = self.comm.all_reduce_mean(flat)
            offset = 0
            for p in self.params:
                n = p.numel()
                p.grad.copy_(flat[offset:offset + n].view_as(p))
                offset += n
        if optimizer is None:
            self.optimizer.step()
        else:
            for group in optimizer.param_groups:
                group["lr"] = self.lr
            optimizer.step()
        if self.scheduler is not None and advance_schedule:
            self.scheduler.step()
        self.updates += 1
