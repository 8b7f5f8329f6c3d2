"""``BASE+RULE``: one algorithm class from a registered base method and a meta rule.

The composed class subclasses the base (so its imputer, distance, schedule, teachers and
checkpoint state are the base's own) and owns the iteration, calling the rule's hooks
(:mod:`algorithms.meta.rule`). Its ``Hparams`` is the union of the base's and the rule's
fields (names must not clash), so a run config, its hash and a search space
(``tune_spaces``) treat a composition like any algorithm.
"""
from __future__ import annotations

import dataclasses
import typing
from typing import Any

import torch

from ..base import Algorithm, BaseMethod, Batch, HoldoutSpec
from ..hparams import ConfigError, optional_in_identity, renamed_keys
from ..stepper import Stepper
from .functional import rng_state, same_rng_state, squared_norm
from .rule import LossRule, MetaRule, StepInfo

_CACHE: dict[tuple[type, type], type[Algorithm]] = {}


def _merged_hparams(base: type[Algorithm], rule: type[MetaRule]) -> type:
    specs: list[tuple[str, Any, dataclasses.Field]] = []
    seen: dict[str, str] = {}
    for owner, cls in ((base.name, base.Hparams), (rule.name, rule.Hparams)):
        hints = typing.get_type_hints(cls)  # real types: the merged class lives in another module
        for f in dataclasses.fields(cls):
            if f.name in seen:
                raise ValueError(f"hyperparameter {f.name!r} of meta rule {rule.name} clashes with {seen[f.name]}'s")
            seen[f.name] = owner
            kw: dict[str, Any] = {"metadata": f.metadata}
            if f.default is not dataclasses.MISSING:
                kw["default"] = f.default
            else:
                kw["default_factory"] = f.default_factory
            specs.append((f.name, hints[f.name], dataclasses.field(**kw)))
    base_names = [f.name for f in dataclasses.fields(base.Hparams)]
    rule_names = [f.name for f in dataclasses.fields(rule.Hparams)]

    def split(self) -> tuple[Any, Any]:
        """(base hyperparameters, rule hyperparameters) as their own dataclasses."""
        return (base.Hparams(**{n: getattr(self, n) for n in base_names}),
                rule.Hparams(**{n: getattr(self, n) for n in rule_names}))

    def validate(self) -> None:
        for part in self.split():
            check = getattr(part, "validate", None)
            if callable(check):
                check()
        reason = base.refuse_rule_with(self.split()[0])
        if reason:
            raise ConfigError(f"{base.name}+{rule.name}: {reason}")

    cls_name = f"{type(base).__name__}_{base.name}_{rule.name}_Hparams".replace("+", "_")
    namespace = {"split": split, "validate": validate,
                 "renamed": {**renamed_keys(base.Hparams), **renamed_keys(rule.Hparams)},
                 "optional_in_identity": optional_in_identity(base.Hparams) + optional_in_identity(rule.Hparams)}
    merged = dataclasses.make_dataclass(cls_name, specs, namespace=namespace)
    merged.__doc__ = (f"Hyperparameters of {base.name}+{rule.name}: the base's ({base.Hparams.__name__}) "
                      f"and the rule's ({rule.Hparams.__name__}).\n\n{base.Hparams.__doc__ or ''}\n\n{rule.Hparams.__doc__ or ''}")
    return merged


def _applied_grad_norm(stepper: Stepper) -> torch.Tensor:
    """Norm of the gradient the last optimizer step applied (already averaged over workers)."""
    return torch.sqrt(squared_norm(p.grad for p in stepper.params if p.grad is not None))


def _can_take_meta_step_first(algo) -> bool:
    """Whether the rule's meta step may precede the student's forward, but for the RNG check."""
    rule = algo.rule
    return (isinstance(rule, LossRule) and isinstance(algo, BaseMethod) and not rule.meta_step_reads_student()
            and algo.imputes_before_student())


def compose(base: type[Algorithm], rule: type[MetaRule]) -> type[Algorithm]:
    """The algorithm class ``base.name + '+' + rule.name``; ConfigError if the rule refuses the base."""
    key = (base, rule)
    if key in _CACHE:
        return _CACHE[key]
    reason = rule.refuse(base)
    if reason:
        raise ConfigError(f"{base.name}+{rule.name} is refused: {reason}")
    merged = _merged_hparams(base, rule)

    def __init__(self, model, hp, ctx) -> None:
        base_hp, rule_hp = hp.split() if isinstance(hp, merged) else (hp, rule.Hparams())
        base.__init__(self, model, base_hp, ctx)
        self.full_hp = hp
        self.rule = rule(self, rule_hp)
        # meta step before the student's forward: None = possible, decided on the first step (loss_rule_inputs)
        self._meta_first: bool | None = None if _can_take_meta_step_first(self) else False

    def loss_rule_inputs(self, batch: Batch, step: int, info: StepInfo) -> tuple:
        """(s, meta): the base's step inputs with the student's logits, and the rule's meta step.

        Where the meta step reads nothing of the student's forward (see
        :meth:`LossRule.meta_step_reads_student`) and the base imputes without it, the meta step
        comes first, so its passes never run beside that forward's graph (the peak memory of a
        forward-mode pass plus the base's activations otherwise). Both orders give the same
        numbers only if no forward draws from the global RNG (dropout, input noise, shake-shake:
        the draws would come in another order); the first step therefore runs in the usual
        order and watches the RNG across the base's forwards, and later steps take the meta step
        first only if nothing drew."""
        if self._meta_first:
            s = self.prepare_before_student(batch, step)
            meta = self.rule.meta_step(s, batch, info)
            return self.with_student_logits(s), meta
        if self._meta_first is False:
            s = self.prepare(batch, step)
            return s, self.rule.meta_step(s, batch, info)
        device = next(self.model.parameters()).device  # undecided: this step watches the RNG
        before = rng_state(device)
        s = self.prepare(batch, step)
        self._meta_first = same_rng_state(before, rng_state(device))
        return s, self.rule.meta_step(s, batch, info)

    def meta_step_first(self) -> bool | None:
        """Whether the template takes the meta step before the student's forward: True, False, or
        None while undecided (before the first step, where the other conditions hold)."""
        return self._meta_first

    def train_step(self, batch: Batch, step: int, stepper: Stepper) -> dict:
        """One iteration of the template (see :mod:`algorithms.meta.rule`)."""
        if isinstance(self.rule, LossRule):
            info = StepInfo(step, stepper.lr)
            s, meta = self.loss_rule_inputs(batch, step, info)
            terms = self.rule.loss_terms(s, meta, info)
            if terms.deferred_labeled is None:
                loss = terms.total()
                stepper.step(loss)
            else:  # the labeled term's forward starts once the base's graph is freed (same update)
                terms.labeled = stepper.step_in_stages(terms.weight * terms.unlabeled, terms.deferred_labeled)
                loss = terms.total()
            out = terms.report(loss)
        else:  # TwoUpdateRule: the base's own update (001 Alg. 1 lines 4-6), the schedule held for the second
            s = self.prepare(batch, step)
            terms = self.base_terms(s)
            loss = terms.total()
            stepper.step(loss, advance_schedule=False)
            info = StepInfo(step, stepper.lr)
            meta = self.rule.meta_step(s, batch, info)
            update = self.rule.second_update(s, meta, info)
            optimizer = self.rule.optimizer_for_second_update(stepper)
            if update.grads is not None:
                names = [n for n, p in self.model.named_parameters() if p.requires_grad]
                stepper.step_with_grads([update.grads[n] for n in names], optimizer=optimizer)
            else:
                stepper.step(update.loss, optimizer=optimizer)
            out = terms.report(loss)
            out.update(self.rule.after_update(s, meta, update, lambda: _applied_grad_norm(stepper), info))
        self.after_step(step)
        return out

    def after_step(self, step: int) -> None:
        base.after_step(self, step)
        self.rule.after_step(step)

    def state_dict(self) -> dict:
        return {"base": base.state_dict(self), "rule": self.rule.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        base.load_state_dict(self, state["base"])
        self.rule.load_state_dict(state["rule"])

    def holdout_spec(cls, hp) -> HoldoutSpec:
        return rule.holdout_spec(hp.split()[1] if isinstance(hp, merged) else hp)

    def refuse_task(cls, task: str) -> str | None:
        why = base.refuse_task(task) or rule.refuse_task(task)
        return f"{cls.name}: {why}" if why else None

    name = f"{base.name}+{rule.name}"
    paper_hps = None if base.paper_hps is None or rule.paper_hps is None else base.paper_hps + rule.paper_hps
    cls = type(f"{base.__name__}With{rule.__name__}", (base,), {
        "name": name, "Hparams": merged, "base_class": base, "rule_class": rule, "paper_hps": paper_hps,
        "description": f"{base.description} + {rule.description}",
        "__doc__": f"{name}: {rule.name} acting on {base.name}.\n\n{rule.__doc__ or ''}",
        "__init__": __init__, "train_step": train_step, "loss_rule_inputs": loss_rule_inputs,
        "meta_step_first": meta_step_first,
        "after_step": after_step, "state_dict": state_dict,
        "load_state_dict": load_state_dict, "holdout_spec": classmethod(holdout_spec),
        "refuse_task": classmethod(refuse_task), "tasks": tuple(t for t in base.tasks if t in rule.tasks),
        "__module__": rule.__module__,
    })
    _CACHE[key] = cls
    return cls
