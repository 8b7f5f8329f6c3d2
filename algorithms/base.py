"""The algorithm contract.

An :class:`Algorithm` owns its update: the engine hands it a global batch and a
:class:`~algorithms.stepper.Stepper`, and it decides how many forwards, gradients and
optimizer steps an iteration takes (meta methods need two updates or a modified gradient).

Most SSL methods are one :class:`BaseMethod` (L2I journal paper, Sec. 3):
``loss = C_T(labeled) + lambda(t) * mean_u mask_u * d(f_theta(T(x_u)), z(x_u))`` with an
imputing function ``z = psi(x_u)`` (:meth:`BaseMethod.impute`), a distance ``d``
(:meth:`BaseMethod.distance`) and a schedule ``lambda(t)`` (:meth:`BaseMethod.unlabeled_weight`).
Meta rules act on exactly these pieces (targets, distance, per-sample weights), which
:meth:`BaseMethod.prepare` exposes without taking a step.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable, ClassVar, Generic, Literal, TypeVar

import torch
from torch import nn

from . import losses
from .hparams import adopt_generic_hparams
from .parallel import Comm
from .schedules import ramp_up
from .stepper import Stepper
from .task import CLASSIFICATION, ClassificationTask, Task, task_refusal

H = TypeVar("H")

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


@dataclass
class Batch:
    """One *global* batch, identical on every worker.

    x_l [B_l, *input_shape] float, y_l [B_l] int64 class labels (regression: [B_l, K] float
    targets in their own units), x_u [B_u, *input_shape] float;
    u_idx [B_u] int64 on the host (CPU): positions of x_u in the unlabeled pool (for per-sample state such as
    temporal ensembling), None when the caller has no pool.
    x_h [B_h, ...], y_h [B_h] (or [B_h, K]): a labeled hold-out batch for meta rules that ask for one
    (:meth:`Algorithm.holdout_spec` with ``size > 0``), None otherwise.
    """

    x_l: torch.Tensor
    y_l: torch.Tensor
    x_u: torch.Tensor
    u_idx: torch.Tensor | None = None
    x_h: torch.Tensor | None = None
    y_h: torch.Tensor | None = None


@dataclass
class TrainContext:
    """What an algorithm may use besides its model and hyperparameters.

    num_classes: width of the network's output (the number of classes; K for regression);
    task: what the run learns (:mod:`algorithms.task`): the supervised loss, the model's output as
    a target, the distance of regression bases, and for regression the standardisation and the
    augmentation that moves the targets (``augment`` / ``strong_augment`` are then unused).
    """

    num_classes: int
    total_steps: int
    comm: Comm = field(default_factory=Comm)
    augment: Augment = lambda x, g: x  # weak augmentation of a global batch (datasets.augment)
    generator: torch.Generator = field(default_factory=lambda: torch.Generator().manual_seed(0))
    num_unlabeled: int = 0  # size of the unlabeled pool that Batch.u_idx indexes
    strong_augment: Augment = lambda x, g: x  # strong augmentation (RandAugment + Cutout for images)
    task: Task = field(default_factory=ClassificationTask)


@dataclass
class LossTerms:
    """This worker's loss terms (each its share of the global mean) and diagnostics
    (scalars: floats or 0-dim tensors).

    ``deferred_labeled``: the labeled term as a function to call only after ``weight *
    unlabeled`` has been backwarded (a meta rule's template then steps in two stages,
    :meth:`~algorithms.stepper.Stepper.step_in_stages`, and fills ``labeled`` with its value),
    for a labeled term whose forward need not overlap the unlabeled term's graph; ``labeled`` is
    None until then."""

    labeled: torch.Tensor | None
    unlabeled: torch.Tensor
    weight: float
    diagnostics: dict[str, float | torch.Tensor] = field(default_factory=dict)
    deferred_labeled: Callable[[], torch.Tensor] | None = None

    def total(self) -> torch.Tensor:
        return self.labeled + self.weight * self.unlabeled

    def report(self, loss: torch.Tensor | None = None) -> dict[str, float | torch.Tensor]:
        """What one training iteration reports: ``loss`` (the total that was stepped on;
        :meth:`total` if None), ``loss_labeled``, ``loss_unlabeled``, ``unlabeled_weight``,
        then the method's diagnostics. Tensors are detached, not read: the engine converts."""
        loss = self.total() if loss is None else loss
        out: dict[str, float | torch.Tensor] = {
            "loss": loss.detach(), "loss_labeled": self.labeled.detach(), "loss_unlabeled": self.unlabeled.detach(),
            "unlabeled_weight": float(self.weight)}
        out.update(self.diagnostics)
        return out


@dataclass
class StepInputs:
    """The pieces of a base method's loss for one step, on this worker's shard.

    x_l [b_l, ...], y_l [b_l] int64 (regression: [b_l, K] float, moved with x_l's augmentation);
    x_u_student [b_u, ...] the student's view of the unlabeled batch (the one its unlabeled loss
    is computed on: FixMatch's strong view); targets [b_u, C] (regression: [b_u, K] in output
    units) the imputed labels z (detached), as targets of the student's view; mask [b_u] per-sample base weights (e.g. a confidence
    threshold); weight = lambda(t); logits_l, logits_u: the student's logits on x_l and
    x_u_student (with graph).
    y_l_soft [b_l, C]: soft labeled targets when the base mixes labeled data (MixMatch), which
    then replace y_l in the labeled loss. x_u_teacher [b_u, ...]: the view the imputer looked
    at when it is another one (Mean Teacher's second view, FixMatch's weak view); None when
    the imputer used the student's own view (Pseudo-Label, mixed batches).
    target_offset [b_u, K]: for regression, what turns an output on the imputer's view into a
    target of the student's view (the views are displaced differently; 001 App. A.1), in output
    units; None when targets do not move with the augmentation (classification).
    """

    x_l: torch.Tensor
    y_l: torch.Tensor
    x_u_student: torch.Tensor
    targets: torch.Tensor
    mask: torch.Tensor
    weight: float
    logits_l: torch.Tensor | None = None
    logits_u: torch.Tensor | None = None
    y_l_soft: torch.Tensor | None = None
    x_u_teacher: torch.Tensor | None = None
    target_offset: torch.Tensor | None = None

    @property
    def imputer_view(self) -> torch.Tensor:
        """The view of the unlabeled batch the targets were imputed from [b_u, ...]."""
        return self.x_u_student if self.x_u_teacher is None else self.x_u_teacher


@dataclass(frozen=True)
class HoldoutSpec:
    """The labeled hold-out batch an algorithm asks the engine for, per step.

    size: global batch size (0: none); mode ``joint`` (drawn from the labeled training set,
    L2I's default) or ``separate`` (from a class-balanced ``fraction`` of the labeled set that
    leaves the labeled training set, 001 Table 6).
    """

    size: int = 0
    mode: Literal["joint", "separate"] = "joint"
    fraction: float = 0.0


NO_HOLDOUT = HoldoutSpec()


@dataclass
class NoHparams:
    """An algorithm without hyperparameters of its own."""


class Algorithm(Generic[H]):
    """Base class of every registered algorithm; ``class M(Algorithm[MHparams])`` sets
    ``M.Hparams`` and types ``self.hp``."""

    name: ClassVar[str] = ""
    Hparams: ClassVar[type] = NoHparams
    uses_unlabeled: ClassVar[bool] = True
    description: ClassVar[str] = ""
    #: whether meta rules can act on it: it implements ``prepare`` -> StepInputs, ``distance``
    #: and ``labeled_losses`` / ``unlabeled_losses`` (BaseMethod does)
    composable: ClassVar[bool] = False
    not_composable_because: ClassVar[str] = ""
    #: names of the scalars ``train_step`` returns (results columns diag_<name>); subclasses
    #: declare their own additions, the results schema takes the union over the class hierarchy
    diagnostics: ClassVar[tuple[str, ...]] = ("loss", "loss_labeled", "loss_unlabeled", "unlabeled_weight")
    #: tunable hyperparameters the papers count for it (Meta-Semi Table 2 "#HPs"); None: no count
    paper_hps: ClassVar[int | None] = None
    #: a meta method that is not a rule: the registered base closest to it in cost without
    #: its meta step (``bench.perf`` measures its overhead against that base)
    cost_reference: ClassVar[str | None] = None
    #: the tasks (:mod:`algorithms.task`) it can learn, and why it cannot learn the others
    tasks: ClassVar[tuple[str, ...]] = (CLASSIFICATION,)
    tasks_note: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        adopt_generic_hparams(cls, Algorithm)

    def __init__(self, model: nn.Module, hp: H, ctx: TrainContext) -> None:
        self.model = model
        self.hp: H = hp
        self.ctx = ctx

    # -- the contract ---------------------------------------------------------------
    def loss_terms(self, batch: Batch, step: int) -> LossTerms:
        """Compute this step's loss terms (with gradients attached); no update."""
        raise NotImplementedError  # abstract

    def train_step(self, batch: Batch, step: int, stepper: Stepper) -> dict[str, float | torch.Tensor]:
        """One training iteration; returns scalar diagnostics (loss terms, method statistics)."""
        terms = self.loss_terms(batch, step)
        loss = terms.total()
        stepper.step(loss)
        self.after_step(step)
        return terms.report(loss)

    def after_step(self, step: int) -> None:
        """Hook after the optimizer step (teachers' EMA updates)."""

    def state_dict(self) -> dict:
        """Algorithm state beyond the model (teachers, buffers) for checkpoints."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        del state

    def eval_models(self) -> dict[str, nn.Module]:
        """Extra models the engine evaluates besides the EMA and raw weights, by name (e.g.
        Mean Teacher's fast-SWA average as "swa"); called on every worker at evaluation time."""
        return {}

    @classmethod
    def refuse_rule_with(cls, hp) -> str | None:
        """Why these base hyperparameters cannot carry a meta rule (None: they can). A composed
        algorithm's ``train_step`` is the rule template's, so options living in the base's own
        ``train_step`` would be silently dropped; such a base says so here."""
        del hp
        return None

    @classmethod
    def holdout_spec(cls, hp) -> HoldoutSpec:
        """The labeled hold-out batch this algorithm needs with hyperparameters ``hp``."""
        del hp
        return NO_HOLDOUT

    @classmethod
    def refuse_task(cls, task: str) -> str | None:
        """Why it cannot learn a ``task`` run (one line), or None if it can."""
        return task_refusal(cls.name, cls.tasks, cls.tasks_note, task)

    # -- helpers shared by subclasses -------------------------------------------------
    def views(self, x: torch.Tensor) -> torch.Tensor:
        """A weakly augmented view of a global batch, sharded to this worker."""
        return self.ctx.comm.shard(self.ctx.augment(x, self.ctx.generator))

    def strong_views(self, x: torch.Tensor) -> torch.Tensor:
        """A strongly augmented view of a global batch, sharded to this worker."""
        return self.ctx.comm.shard(self.ctx.strong_augment(x, self.ctx.generator))

    def labeled_views(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A weakly augmented view of a global labeled batch and its targets (moved alike for
        regression), sharded: x [B, ...], y [B] or [B, K] -> this worker's rows."""
        comm = self.ctx.comm
        x_aug, y_aug = self.ctx.task.augment_labeled(self.ctx.augment, x, y, self.ctx.generator)
        return comm.shard(x_aug), comm.shard(y_aug)

    def target_losses(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The task's per-sample supervised loss against ground truth y: [b, C], [b] (or [b, K]) -> [b]."""
        return self.ctx.task.losses(out, y)

    def target_loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The task's mean supervised loss (the L2I rules' hold-out loss C_H)."""
        return self.ctx.task.loss(out, y)


class BaseMethod(Algorithm[H]):
    """A consistency method in the imputer / distance / schedule form.

    Subclasses implement :meth:`impute` and may override :meth:`distance`; their
    ``Hparams`` carry ``lambda_u``, ``rampup_fraction`` and ``rampup`` (see
    :func:`unlabeled_weight`).
    """

    #: whether :meth:`impute` needs a second augmented view of x_u (teachers do; Pseudo-Label does
    #: not). When targets move with the augmentation (regression) every base imputes from a view of
    #: its own, whose displacement is known, and carries the targets over (:meth:`teacher_view_needed`).
    needs_teacher_view: ClassVar[bool] = True
    #: regression: the student's unlabeled view, ``augmented`` (weakly, like the imputer's) or
    #: ``original`` (the un-augmented image; 001 App. A.1 for Pseudo-Label)
    regression_student_view: ClassVar[str] = "augmented"
    composable = True
    diagnostics = ("mask_fraction",)
    #: whether :meth:`impute` reads the student's logits (Pseudo-Label's own predictions) or needs
    #: the student's forward to have run first (a second forward of the student, which updates its
    #: BatchNorm statistics after the first one: the Pi-model). False (Mean Teacher: an EMA
    #: teacher on its own view) lets a meta rule take its meta step before the student's forward
    #: (:meth:`prepare_before_student`), so the two never hold activations together.
    impute_reads_student: ClassVar[bool] = True

    def distance(self, logits_u: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Per-sample d(f(T(x_u)), z): logits [b, C], targets [b, C] -> [b] (cross-entropy; for
        regression the task's squared error)."""
        return self.ctx.task.consistency(logits_u, targets, losses.soft_cross_entropy)

    def impute(self, x_u_teacher: torch.Tensor | None, logits_u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """psi: imputed targets [b, C] (detached) and a per-sample mask [b].

        ``x_u_teacher`` is a second augmented view of this worker's unlabeled shard (None if
        :meth:`teacher_view_needed` is False); ``logits_u`` the student's logits on its own view
        (None, the student not run yet, when :attr:`impute_reads_student` is False).
        Regression targets are returned as targets of ``x_u_teacher`` (output units); ``prepare``
        carries them over to the student's view.
        """
        raise NotImplementedError  # abstract

    def unlabeled_weight(self, step: int) -> float:
        """lambda(t) = lambda_u * ramp-up(t)."""
        hp = self.hp
        return hp.lambda_u * ramp_up(step, self.ctx.total_steps, hp.rampup_fraction, hp.rampup)

    def teacher_view_needed(self) -> bool:
        """Whether ``prepare`` draws a second view of x_u for the imputer."""
        return self.needs_teacher_view or self.ctx.task.moves_targets

    def unlabeled_view(self, x: torch.Tensor, original: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A weakly augmented view of a global unlabeled batch, sharded, and the displacement of its
        targets ([b, K] for regression, None for classification); ``original``: the un-augmented
        batch (regression only) with zero displacement."""
        comm, task = self.ctx.comm, self.ctx.task
        if original:
            x_v = comm.shard(x)
            return x_v, task.no_displacement(x_v)
        x_aug, delta = task.augment_unlabeled(self.ctx.augment, x, self.ctx.generator)
        return comm.shard(x_aug), None if delta is None else comm.shard(delta)

    def prepare(self, batch: Batch, step: int) -> StepInputs:
        """Augment, shard, run the student once on labeled + unlabeled, and impute."""
        x_l, y_l, x_u, moved_u, x_u_teacher, moved_t = self._step_views(batch)
        logits_l, logits_u = self.student_logits(x_l, x_u)
        targets, mask = self.impute(x_u_teacher, logits_u)
        return self._step_inputs(step, x_l, y_l, x_u, x_u_teacher, moved_t, moved_u, targets, mask, logits_l, logits_u)

    @classmethod
    def imputes_before_student(cls) -> bool:
        """Whether :meth:`prepare_before_student` can impute before the student's forward."""
        return not cls.impute_reads_student and cls.prepare is BaseMethod.prepare

    def prepare_before_student(self, batch: Batch, step: int) -> StepInputs | None:
        """:meth:`prepare` without the student's forward (``logits_l`` and ``logits_u`` None; add them
        with :meth:`with_student_logits`), or None when this base cannot impute before it
        (:attr:`impute_reads_student`, or a ``prepare`` of its own). The views draw the augmentation
        generator in :meth:`prepare`'s order and the student's forward reads nothing the imputation
        changes, so the inputs, targets and logits are :meth:`prepare`'s."""
        if not self.imputes_before_student():
            return None
        x_l, y_l, x_u, moved_u, x_u_teacher, moved_t = self._step_views(batch)
        targets, mask = self.impute(x_u_teacher, None)
        return self._step_inputs(step, x_l, y_l, x_u, x_u_teacher, moved_t, moved_u, targets, mask, None, None)

    def with_student_logits(self, s: StepInputs) -> StepInputs:
        """``s`` with the student's logits on its labeled and unlabeled views (with graph)."""
        logits_l, logits_u = self.student_logits(s.x_l, s.x_u_student)
        return dataclasses.replace(s, logits_l=logits_l, logits_u=logits_u)

    def student_logits(self, x_l: torch.Tensor, x_u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The student's logits on x_l [b_l, ...] and x_u [b_u, ...], with graph: [b_l, C], [b_u, C]."""
        # One forward over labeled and unlabeled together, so BatchNorm sees both (as MixMatch's interleaving intends).
        logits = self.model(torch.cat([x_l, x_u]))
        return logits[: x_l.shape[0]], logits[x_l.shape[0]:]

    def _step_views(self, batch: Batch) -> tuple:
        """(x_l, y_l, x_u, moved_u, x_u_teacher, moved_t): this worker's views, drawn in a fixed order."""
        task = self.ctx.task
        x_l, y_l = self.labeled_views(batch.x_l, batch.y_l)
        original = task.moves_targets and self.regression_student_view == "original"
        x_u, moved_u = self.unlabeled_view(batch.x_u, original)
        x_u_teacher, moved_t = self.unlabeled_view(batch.x_u) if self.teacher_view_needed() else (None, None)
        return x_l, y_l, x_u, moved_u, x_u_teacher, moved_t

    def _step_inputs(self, step: int, x_l, y_l, x_u, x_u_teacher, moved_t, moved_u, targets, mask,
                     logits_l, logits_u) -> StepInputs:
        offset = self.ctx.task.view_offset(moved_t, moved_u)
        if offset is not None:
            targets = targets + offset
        return StepInputs(x_l, y_l, x_u, targets.detach(), mask.detach(), self.unlabeled_weight(step), logits_l, logits_u,
                          x_u_teacher=x_u_teacher, target_offset=offset)

    def labeled_losses(self, logits_l: torch.Tensor, s: StepInputs) -> torch.Tensor:
        """Per-sample C_T terms [b_l]: the task's loss with y_l (cross-entropy, or the squared
        error for regression), or cross-entropy with ``s.y_l_soft`` when set."""
        if s.y_l_soft is not None:
            return losses.soft_cross_entropy(logits_l, s.y_l_soft)
        return self.target_losses(logits_l, s.y_l)

    def project_targets(self, z: torch.Tensor, fallback: torch.Tensor) -> torch.Tensor:
        """Corrected targets back onto valid ones (the simplex for classes; unchanged for regression)."""
        return self.ctx.task.project(z, fallback)

    def unlabeled_losses(self, logits_u: torch.Tensor, s: StepInputs, targets: torch.Tensor | None = None) -> torch.Tensor:
        """Per-sample C_U terms [b_u]: mask * d(logits_u, z), z = ``targets`` or ``s.targets``."""
        return self.distance(logits_u, s.targets if targets is None else targets) * s.mask

    def base_terms(self, s: StepInputs) -> LossTerms:
        """C_T + lambda(t) C_U of prepared inputs: means over this worker's shard, and the
        global fraction of unlabeled samples the base's mask keeps."""
        loss_l = self.labeled_losses(s.logits_l, s).mean()
        loss_u = self.unlabeled_losses(s.logits_u, s).mean()
        return LossTerms(loss_l, loss_u, s.weight, {"mask_fraction": self.ctx.comm.all_reduce_mean(s.mask.float().mean())})

    def loss_terms(self, batch: Batch, step: int) -> LossTerms:
        return self.base_terms(self.prepare(batch, step))


def hparam_fields(cls: type) -> dict[str, object]:
    """Default value of every hyperparameter of ``cls.Hparams`` (for docs and result columns)."""
    return {f.name: f.default for f in dataclasses.fields(cls.Hparams)}
