"""Meta rules: what a meta-SSL method changes on top of a base method.

A base method (:class:`~algorithms.base.BaseMethod`, or any algorithm that sets
``composable = True`` and implements ``prepare``) defines, for one step, the imputed targets z,
the distance d, per-sample base weights (mask) and lambda(t) (:class:`~algorithms.base.StepInputs`).
A meta rule changes the update: the targets (L2I learnable labels, Meta-Gradient SSL), the
per-sample weights (Meta-Semi, Learning to Reweight) or the gradient of theta (L2I model
output), using the labeled batch or a labeled hold-out batch.

A rule is a template's hooks, not a training step: the composed algorithm
(:func:`algorithms.meta.compose.compose`) owns the iteration

    prepare -> [the base's own update] -> rule.meta_step -> rule.loss_terms or rule.second_update
            -> optimizer step -> the base's after_step -> diagnostics

so that no rule can forget the base's teacher update or touch the optimizer itself (a
:class:`LossRule` whose meta step needs nothing of the student's forward has it taken before
that forward where the numbers stay the same: :meth:`LossRule.meta_step_reads_student`). Two kinds:

* :class:`LossRule` (one update per iteration): the rule builds the loss terms from the base's
  pieces and its meta step (Meta-Semi, Learning to Reweight, Meta-Gradient SSL);
* :class:`TwoUpdateRule` (L2I, 001 Alg. 1): the base's own update first (the lr schedule held),
  then a second update that the rule defines by a loss or by gradients.

``meta_step`` holds the meta passes and must leave BatchNorm statistics and ``.grad`` alone
(functional passes, :mod:`algorithms.meta.functional`); ``tests/test_rule_contract.py`` checks
this, the base's ``after_step`` and 2 workers == 1 for every registered rule on every base it
accepts. Rules live one per file in ``algorithms/rules/`` and register with :func:`register_rule`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Generic, Protocol, TypeVar

import torch
from torch import nn

from ..base import NO_HOLDOUT, Batch, HoldoutSpec, LossTerms, NoHparams, StepInputs, TrainContext
from ..hparams import ConfigError, adopt_generic_hparams
from ..task import CLASSIFICATION, task_refusal

if TYPE_CHECKING:
    from ..stepper import Stepper

H = TypeVar("H")
Diagnostics = dict[str, "float | torch.Tensor"]


class RuleHost(Protocol):
    """What a meta rule may use of the base method it acts on (``MetaRule.algo``)."""

    model: nn.Module
    ctx: TrainContext

    def views(self, x: torch.Tensor) -> torch.Tensor:
        """A weakly augmented view of a global batch, sharded to this worker."""
        ...

    def distance(self, logits_u: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The base's per-sample distance d: [b, C], [b, C] -> [b]."""
        ...

    def labeled_losses(self, logits_l: torch.Tensor, s: StepInputs) -> torch.Tensor:
        """The base's per-sample C_T terms [b_l]."""
        ...

    def unlabeled_losses(self, logits_u: torch.Tensor, s: StepInputs, targets: torch.Tensor | None = None) -> torch.Tensor:
        """The base's per-sample C_U terms mask * d(logits_u, z) [b_u]."""
        ...

    def unlabeled_weight(self, step: int) -> float:
        """lambda(t)."""
        ...

    # -- what depends on the task (classification / regression; algorithms.task) --------------
    def labeled_views(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A weakly augmented view of a global labeled batch and its targets, sharded."""
        ...

    def target_losses(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The task's per-sample loss against ground truth [b] (cross-entropy; squared error)."""
        ...

    def target_loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The task's mean loss against ground truth (a hold-out loss C_H)."""
        ...

    def unlabeled_view(self, x: torch.Tensor, original: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A weakly augmented view of a global unlabeled batch, sharded, and the displacement of its
        targets ([b, K] for regression, None for classification)."""
        ...

    def project_targets(self, z: torch.Tensor, fallback: torch.Tensor) -> torch.Tensor:
        """Corrected targets back onto valid ones (the simplex; nothing for regression)."""
        ...


@dataclass(frozen=True)
class StepInfo:
    """Where the iteration stands: its index and the learning rate alpha_t of the update the
    rule feeds (the papers' virtual-step size)."""

    step: int
    lr: float


@dataclass
class SecondUpdate:
    """The second update of a :class:`TwoUpdateRule`: a loss to step on (with graph), or
    gradients by parameter name (this worker's part; the stepper averages over workers)."""

    loss: torch.Tensor | None = None
    grads: dict[str, torch.Tensor] | None = None


class MetaRule(Generic[H]):
    """Base class of a meta rule. One instance per run, bound to the composed algorithm.

    ``self.algo`` is the base method (:class:`RuleHost`: its model, context, distance and loss
    pieces); ``self.hp`` the rule's own hyperparameters (``class R(LossRule[RHparams])`` sets
    ``R.Hparams`` and types ``self.hp``).
    """

    name: ClassVar[str] = ""
    Hparams: ClassVar[type] = NoHparams
    description: ClassVar[str] = ""
    #: scalars its ``train_step`` returns beyond the base's (results columns diag_<name>)
    diagnostics: ClassVar[tuple[str, ...]] = ()
    #: hyperparameters the rule adds to its base's count ("#HPs"); None: no count
    paper_hps: ClassVar[int | None] = None
    #: order of the derivatives the meta step takes ("first" / "second") when no hyperparameter
    #: is a ``method_field`` saying so per value (``bench.perf`` checks its cost target on it)
    meta_order: ClassVar[str | None] = None
    #: the tasks (:mod:`algorithms.task`) it can act on, and why not the others (one line)
    tasks: ClassVar[tuple[str, ...]] = (CLASSIFICATION,)
    tasks_note: ClassVar[str] = ""
    #: the passes its method's own definition needs beyond the base's step, per value of its
    #: ``meta_method``: (kind, batch) pairs, kind ``forward`` (no graph), ``forward_backward`` or
    #: ``jvp``, batch ``labeled``, ``unlabeled``, ``holdout``, ``inner`` (labeled + unlabeled) or
    #: ``mixed`` (max of the two). ``bench.perf`` times them alone: the row's pass-count floor.
    floor_passes: ClassVar[dict[str, tuple[tuple[str, str], ...]]] = {}

    @classmethod
    def floor_for(cls, hp) -> tuple[tuple[str, str], ...] | None:
        """The floor passes at hyperparameters ``hp`` (``floor_passes`` of its ``meta_method``;
        None where none is declared, or where other settings change the passes)."""
        return cls.floor_passes.get(getattr(hp, "meta_method", None))

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        adopt_generic_hparams(cls, MetaRule)

    def __init__(self, algo: RuleHost, hp: H) -> None:
        self.algo = algo
        self.hp: H = hp

    @classmethod
    def refuse(cls, base: type) -> str | None:
        """Why this rule cannot act on ``base`` (a one-line reason), or None if it can.

        The default accepts every composable base method (those exposing ``prepare``).
        """
        if not getattr(base, "composable", False):
            why = getattr(base, "not_composable_because", "") or "it does not expose imputed targets and a distance"
            return f"{base.name} cannot carry a meta rule: {why}"
        return None

    @classmethod
    def refuse_task(cls, task: str) -> str | None:
        """Why it cannot act on a ``task`` run (one line), or None if it can."""
        return task_refusal(f"meta rule {cls.name}", cls.tasks, cls.tasks_note, task)

    @classmethod
    def holdout_spec(cls, hp) -> HoldoutSpec:
        """The labeled hold-out batch the rule needs with hyperparameters ``hp`` (default: none)."""
        del hp
        return NO_HOLDOUT

    def meta_step(self, s: StepInputs, batch: Batch, info: StepInfo) -> Any:
        """The rule's meta passes on the base's step inputs ``s`` (for a TwoUpdateRule: after
        the base's update). Must not update BatchNorm statistics or write any ``.grad``.
        Returns whatever the rule's next hook needs."""
        raise NotImplementedError  # abstract

    def after_step(self, step: int) -> None:
        """Hook after the iteration's last optimizer step (after the base's own ``after_step``)."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        del state


class LossRule(MetaRule[H]):
    """A rule whose iteration is one optimizer step on loss terms it builds."""

    def meta_step_reads_student(self) -> bool:
        """Whether :meth:`meta_step` reads what the student's training forward computes or
        changes: ``s.logits_l`` / ``s.logits_u``, or the BatchNorm statistics that forward
        updates (meta passes in eval BN mode). False lets the template take the meta step before
        that forward, where the base imputes without it (Mean Teacher), so the meta passes never
        run beside its graph: same numbers, lower peak memory. Default True (the safe order)."""
        return True

    def loss_terms(self, s: StepInputs, meta: Any, info: StepInfo) -> LossTerms:
        """The terms to step on (labeled, unlabeled with graph; weight; diagnostics) from the
        base's inputs ``s`` and the meta step's result ``meta``. Training forwards (which may
        update BatchNorm statistics) belong here, not in ``meta_step``."""
        raise NotImplementedError  # abstract


class TwoUpdateRule(MetaRule[H]):
    """A rule whose iteration is the base's own update followed by a second one (L2I).

    The second update uses the run's optimizer and its moments, or (``separate_optimizer``)
    an optimizer of the same class and settings with its own state, saved with checkpoints.
    """

    def __init__(self, algo: RuleHost, hp: H) -> None:
        super().__init__(algo, hp)
        self._own_opt: torch.optim.Optimizer | None = None
        self._pending_state: dict | None = None

    def separate_optimizer(self) -> bool:
        """Whether the second update has an optimizer of its own (default: the run's)."""
        return False

    def second_update(self, s: StepInputs, meta: Any, info: StepInfo) -> SecondUpdate:
        """The second update from the meta step's result (a loss, or gradients by name)."""
        raise NotImplementedError  # abstract

    def after_update(self, s: StepInputs, meta: Any, update: SecondUpdate, applied_grad_norm: Callable[[], torch.Tensor],
                     info: StepInfo) -> Diagnostics:
        """Diagnostics after the second update; ``applied_grad_norm()`` is the norm of the
        (worker-averaged) gradient it applied."""
        del s, meta, update, applied_grad_norm, info
        return {}

    def optimizer_for_second_update(self, stepper: "Stepper") -> torch.optim.Optimizer | None:
        """None (the run's optimizer) or the rule's own (created on first use, restored from a
        checkpoint if one was loaded before)."""
        if not self.separate_optimizer():
            return None
        if self._own_opt is None:
            self._own_opt = stepper.fresh_optimizer()
            if self._pending_state is not None:
                self._own_opt.load_state_dict(self._pending_state)
                self._pending_state = None
        return self._own_opt

    def state_dict(self) -> dict:
        if self._own_opt is not None:
            return {"meta_optimizer": self._own_opt.state_dict()}
        return {"meta_optimizer": self._pending_state} if self._pending_state is not None else {}

    def load_state_dict(self, state: dict) -> None:
        self._pending_state = state.get("meta_optimizer")
        if self._own_opt is not None and self._pending_state is not None:
            self._own_opt.load_state_dict(self._pending_state)
            self._pending_state = None


_RULES: dict[str, type[MetaRule]] = {}


def register_rule(cls: type[MetaRule]) -> type[MetaRule]:
    """Class decorator: make rule ``cls`` available under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} has no name")
    if cls.name in _RULES and _RULES[cls.name] is not cls:
        raise ValueError(f"meta rule {cls.name!r} registered twice")
    if not issubclass(cls, (LossRule, TwoUpdateRule)):
        raise ValueError(f"meta rule {cls.name!r} must subclass LossRule or TwoUpdateRule")
    _RULES[cls.name] = cls
    return cls


def rules() -> dict[str, type[MetaRule]]:
    """The registered rules by name (call ``algorithms.registry`` functions to load them first)."""
    return dict(_RULES)


def get_rule(name: str) -> type[MetaRule]:
    try:
        return _RULES[name]
    except KeyError:
        raise ConfigError(f"unknown meta rule {name!r} (valid: {', '.join(sorted(_RULES)) or 'none'})") from None
