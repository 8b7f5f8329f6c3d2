"""Meta rules: what a meta-SSL method changes on top of a base method (DESIGN.md §1).

A base method (:class:`~algorithms.base.BaseMethod`, or any algorithm that sets
``composable = True`` and implements ``prepare``) defines, for one step, the imputed targets z,
the distance d, per-sample base weights (mask) and lambda(t) (:class:`~algorithms.base.StepInputs`).
A meta rule takes over the update: it may change the targets (L2I learnable labels,
Meta-Gradient SSL), the per-sample weights (Meta-Semi, Learning to Reweight) or the gradient
of theta (L2I model output), using the labeled batch or a labeled hold-out batch.

A run names ``BASE+RULE`` (``mean_teacher+l2i_o``); :func:`algorithms.meta.compose.compose`
builds that algorithm from the two registered classes. Rules live one per file in
``algorithms/rules/`` and register themselves with :func:`register_rule`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from ..base import Batch, NoHparams
from ..hparams import ConfigError

if TYPE_CHECKING:
    from ..base import Algorithm
    from ..stepper import Stepper

HoldoutMode = Literal["joint", "separate"]


class MetaRule:
    """Base class of a meta rule. One instance per run, bound to the composed algorithm.

    ``self.algo`` is the composed algorithm: a full instance of the base method (its model,
    hyperparameters ``self.algo.hp`` of the base, context ``self.algo.ctx``, ``prepare``,
    ``distance``, ``unlabeled_weight``); ``self.hp`` the rule's own hyperparameters.
    """

    name: ClassVar[str] = ""
    Hparams: ClassVar[type] = NoHparams
    description: ClassVar[str] = ""
    #: scalars its ``train_step`` returns beyond the base's (results columns diag_<name>)
    diagnostics: ClassVar[tuple[str, ...]] = ()

    def __init__(self, algo: "Algorithm", hp) -> None:
        self.algo = algo
        self.hp = hp

    @classmethod
    def refuse(cls, base: type) -> str | None:
        """Why this rule cannot act on ``base`` (a one-line reason), or None if it can.

        The default accepts every composable base method (those exposing ``prepare``).
        """
        if not getattr(base, "composable", False):
            why = getattr(base, "not_composable_because", "") or "it does not expose imputed targets and a distance"
            return f"{base.name} cannot carry a meta rule: {why}"
        return None

    def train_step(self, batch: Batch, step: int, stepper: "Stepper") -> dict[str, float]:
        """One training iteration of the composed method; returns scalar diagnostics."""
        raise NotImplementedError  # abstract

    def holdout_batch_size(self) -> int:
        """Global size of the labeled hold-out batch the engine must add to each Batch (0: none)."""
        return 0

    def holdout_mode(self) -> HoldoutMode:
        """``joint``: hold-out batches are drawn from the labeled training set (L2I default);
        ``separate``: from a disjoint part of the labeled set that C_T never sees (001 Table 6)."""
        return "joint"

    def holdout_fraction(self) -> float:
        """Fraction of the labeled set held out when ``holdout_mode`` is ``separate``."""
        return 0.0

    def after_step(self, step: int) -> None:
        """Hook after the optimizer step."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        del state


_RULES: dict[str, type[MetaRule]] = {}


def register_rule(cls: type[MetaRule]) -> type[MetaRule]:
    """Class decorator: make rule ``cls`` available under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} has no name")
    if cls.name in _RULES and _RULES[cls.name] is not cls:
        raise ValueError(f"meta rule {cls.name!r} registered twice")
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
