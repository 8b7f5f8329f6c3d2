"""Exponential moving averages of model weights (evaluation model, Mean Teacher, Meta-Semi)."""
from __future__ import annotations

import copy

import torch
from torch import nn


class WeightEMA:
    """theta' <- d theta' + (1 - d) theta after every step, buffers copied.

    ``decay_t = min(decay, (t + 1) / (t + 10))`` so that short runs are not dominated by
    the random initialisation (the warm-up of Tarvainen & Valpola's code is
    ``min(1 - 1/(t+1), decay)``; ours is a little slower at the very start).
    The averaged copy never receives gradients and is used in eval mode only by callers.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.model = copy.deepcopy(model)
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.updates = 0

    def current_decay(self) -> float:
        return min(self.decay, (self.updates + 1) / (self.updates + 10))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.current_decay()
        # multi-tensor ops: the per-tensor loop's values, one kernel per operation
        ema_params = list(self.model.parameters())
        torch._foreach_mul_(ema_params, d)
        torch._foreach_add_(ema_params, [p.detach() for p in model.parameters()], alpha=1.0 - d)
        ema_buffers, buffers = list(self.model.buffers()), list(model.buffers())
        if ema_buffers:
            torch._foreach_copy_(ema_buffers, buffers)
        self.updates += 1

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.updates = int(state["updates"])


class EMATeacherMixin:
    """For algorithms with ``self.teacher`` (a :class:`WeightEMA`): it follows the student after
    every optimizer step and is saved with checkpoints."""

    teacher: WeightEMA

    def after_step(self, step: int) -> None:
        self.teacher.update(self.model)

    def state_dict(self) -> dict:
        return {"teacher": self.teacher.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.teacher.load_state_dict(state["teacher"])
