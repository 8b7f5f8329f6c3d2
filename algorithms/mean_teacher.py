"""Mean Teacher (Tarvainen & Valpola 2017), optionally with fast-SWA (Athiwaratkun et al., ICLR 2019).

fast-SWA ("There Are Many Consistent Explanations of Unlabeled Data: Why You Should Average";
official code github.com/benathi/fastswa-semi-sup, ``main.py``) keeps a running *equal-weight*
average of the **student** weights, taken every ``k`` epochs from epoch ``l - c`` on, where the
learning rate after epoch ``l`` repeats the segment ``[l - c, l)`` of the base cosine schedule
(cycles of length ``c``); the averaged network's BatchNorm statistics are recomputed on
training batches before it is evaluated. The teacher is untouched: it stays the EMA of the
student. Here, in optimizer steps (S = ``swa_start`` * total_steps, c = ``swa_cycle``,
k = ``swa_every``):

* averaging: after ``n`` updates, average the student if ``n >= S`` and ``(n - S) % k == 0``
  (the code's ``epoch >= l - c and (epoch - l + c) % k == 0``, with S = l - c);
* cycles (``swa_cycle > 0``): from step S on, the update at step t uses the engine's own
  schedule evaluated at ``S + (t - S) mod c``. With S = l - c this is the paper's rule: the
  first cycle [S, S + c) is the base schedule itself and every later one repeats it.
  ``swa_cycle = 0``: no cycles, the engine's schedule runs unchanged (averaging along it).

Departures from the paper, and why:

* the base schedule is the engine's (cosine to zero over the whole run, or constant), not the
  paper's cosine with period ``l + c`` cut at ``l``; the repeated segment is therefore the one the
  engine's schedule has at [S, S + c), which need not end near the paper's small final lr;
* the cycle is applied by overwriting the optimizer's learning rate inside
  :meth:`MeanTeacher.train_step` before the step; the Stepper's LambdaLR recomputes the lr from
  its base after every step, so the optimizer and scheduler states (hence checkpoints) stay
  exactly what they are without cycles, and the cyclic lr is a pure function of the step;
* BatchNorm statistics are recomputed with ``swa_utils.update_bn`` (cumulative average,
  ``momentum=None``) over the last ``swa_bn_batches`` *global* batches seen in training,
  un-augmented, each labeled + unlabeled concatenated as the student's forward concatenates
  them; the official code runs ~100 augmented training batches with the default momentum.
  Keeping references to batches already on the device costs no data loading and no draws from
  the augmentation generator (which would change the training trajectory); since every worker
  holds the same global batch, every worker computes the same statistics. The statistics are
  recomputed lazily, when the engine asks for :meth:`MeanTeacher.eval_models`, under a forked
  RNG so that stochastic layers (dropout, shake-shake) do not move the training's random stream;
* averages are over optimizer steps, not epochs (the suite's budgets are in steps).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from torch.optim.swa_utils import AveragedModel, update_bn

from . import losses
from .base import Batch, BaseMethod
from .ema import EMATeacherMixin, WeightEMA
from .hparams import require
from .registry import register
from .stepper import Stepper
from .task import TASKS


@dataclass
class MeanTeacherHparams:
    """lambda_u: consistency weight on the class-summed squared error of softmaxes (the
    original code averages over classes, so its 100 on CIFAR-10 is 10 here); ema_decay: the
    teacher's weight-averaging decay (0.99 in the ramp-up phase of the original, 0.999 after;
    short budgets want the smaller one).

    fast-SWA (off by default; see the module docstring): swa_start: fraction of the run after
    which the student is averaged (the paper's l - c); swa_every: average every k steps;
    swa_cycle: cyclic learning-rate period c in steps from swa_start on (0: the engine's
    schedule unchanged); swa_bn_batches: how many recent global batches recompute the averaged
    model's BatchNorm statistics."""

    lambda_u: float = field(default=10.0, metadata={"range": (1.0, 100.0), "scale": "log"})
    ema_decay: float = field(default=0.99, metadata={"range": (0.9, 0.999), "scale": "log"})
    rampup_fraction: float = 0.4
    rampup: Literal["linear", "sigmoid", "none"] = "sigmoid"
    fast_swa: bool = False
    swa_start: float = 0.75
    swa_every: int = 10
    swa_cycle: int = 0
    swa_bn_batches: int = 8

    def validate(self) -> None:
        require(self.lambda_u >= 0, "mean_teacher lambda_u must be >= 0")
        require(0.0 <= self.ema_decay < 1.0, "mean_teacher ema_decay must be in [0, 1)")
        require(0.0 <= self.rampup_fraction <= 1.0, "mean_teacher rampup_fraction must be in [0, 1]")
        require(0.0 <= self.swa_start < 1.0, "mean_teacher swa_start must be in [0, 1)")
        require(self.swa_every >= 1, "mean_teacher swa_every must be >= 1")
        require(self.swa_cycle >= 0, "mean_teacher swa_cycle must be >= 0 (0: no cycles)")
        # fast-SWA averages several points per cycle (k < c in the paper)
        require(self.swa_cycle == 0 or self.swa_cycle >= self.swa_every,
                "mean_teacher swa_cycle must be 0 or >= swa_every")
        require(self.swa_bn_batches >= 1, "mean_teacher swa_bn_batches must be >= 1")


@register
class MeanTeacher(EMATeacherMixin, BaseMethod[MeanTeacherHparams]):
    """psi = softmax of the EMA teacher on a second augmented view; d = ||softmax(f(x)) - z||^2.
    Regression: psi = the teacher's regressed values on a second shifted view, carried over to the
    student's shifted view (the shifts subtracted and added, as the official L2I code); d = the
    task's squared error.

    The teacher is a separate copy whose weights are the EMA of the student's, updated after
    every optimizer step; it never receives gradients. With ``fast_swa`` an equal-weight
    average of the student (``self.swa``, a ``torch.optim.swa_utils.AveragedModel``) is kept
    as well and evaluated by the engine as model "swa".
    """

    name = "mean_teacher"
    paper_hps = 2  # tunable hyperparameters the papers count: Meta-Semi Table 2
    description = "EMA teacher, squared error between student and teacher softmax"
    tasks = TASKS

    def __init__(self, model, hp, ctx) -> None:
        super().__init__(model, hp, ctx)
        self.teacher = WeightEMA(model, hp.ema_decay)
        self.swa: AveragedModel | None = None
        if hp.fast_swa:
            self.swa = AveragedModel(model)
            for p in self.swa.parameters():
                p.requires_grad_(False)
            self.swa_start_step = int(round(hp.swa_start * ctx.total_steps))
            # (x_l [B_l, ...], x_u [B_u, ...]) of the latest global batches, for update_bn
            self._bn_batches: deque[tuple[torch.Tensor, torch.Tensor]] = deque(maxlen=hp.swa_bn_batches)

    def distance(self, logits_u: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.ctx.task.consistency(logits_u, targets, losses.softmax_squared_error)

    impute_reads_student = False  # the EMA teacher on its own view: a meta step may come before the student's forward

    @torch.no_grad()
    def impute(self, x_u_teacher: torch.Tensor, logits_u: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        self.teacher.model.train(self.model.training)
        targets = self.ctx.task.output_targets(self.teacher.model(x_u_teacher))
        return targets, torch.ones(targets.shape[0], device=targets.device, dtype=targets.dtype)

    @classmethod
    def refuse_rule_with(cls, hp) -> str | None:
        if hp.fast_swa:
            return "fast_swa lives in Mean Teacher's own train_step, which a meta rule replaces; switch it off"
        return None

    # -- fast-SWA -------------------------------------------------------------------------
    def train_step(self, batch: Batch, step: int, stepper: Stepper) -> dict[str, float]:
        if self.swa is None:
            return super().train_step(batch, step, stepper)
        if self.hp.swa_cycle > 0 and step >= self.swa_start_step:
            self._set_cyclic_lr(stepper, step)
        out = super().train_step(batch, step, stepper)
        self._bn_batches.append((batch.x_l, batch.x_u))
        n = step + 1  # updates taken so far
        if n >= self.swa_start_step and (n - self.swa_start_step) % self.hp.swa_every == 0:
            self.swa.update_parameters(self.model)
        return out

    def _set_cyclic_lr(self, stepper: Stepper, step: int) -> None:
        """lr(t) = schedule(S + (t - S) mod c), written into the optimizer for this step only."""
        sched = stepper.scheduler
        if sched is None:  # a constant lr repeated is the same constant
            return
        if not isinstance(sched, LambdaLR):
            raise TypeError(f"mean_teacher swa_cycle needs a LambdaLR schedule, got {type(sched).__name__}")
        s = self.swa_start_step + (step - self.swa_start_step) % self.hp.swa_cycle
        for group, base, lam in zip(stepper.optimizer.param_groups, sched.base_lrs, sched.lr_lambdas):
            group["lr"] = base * lam(s)

    def eval_models(self) -> dict[str, nn.Module]:
        """{"swa": the averaged student, BatchNorm statistics recomputed}; {} before the first average."""
        if self.swa is None or int(self.swa.n_averaged) == 0:
            return {}
        model = self.swa.module
        batches = [torch.cat([x_l, x_u]) for x_l, x_u in self._bn_batches]
        device = next(model.parameters()).device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            update_bn(batches, model)
        return {"swa": model}

    def state_dict(self) -> dict:
        state = super().state_dict()
        if self.swa is not None:
            # the kept batches too: a resumed run must recompute the same BN statistics
            state["swa"] = self.swa.state_dict()
            state["swa_bn_batches"] = list(self._bn_batches)
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        if self.swa is not None:
            self.swa.load_state_dict(state["swa"])
            device = next(self.model.parameters()).device
            self._bn_batches.clear()
            self._bn_batches.extend((x_l.to(device), x_u.to(device)) for x_l, x_u in state["swa_bn_batches"])
