"""``BASE+RULE``: one algorithm class from a registered base method and a meta rule.

The composed class subclasses the base (so its imputer, distance, schedule, teachers and
checkpoint state are the base's own) and hands ``train_step`` to the rule. Its ``Hparams``
is the union of the base's and the rule's fields (names must not clash), so a run config,
its hash and a search space (``tune_spaces``) treat a composition like any algorithm.
"""
from __future__ import annotations

import dataclasses
import typing
from typing import Any

from ..base import Algorithm, Batch
from ..hparams import ConfigError
from .rule import MetaRule

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
    merged = dataclasses.make_dataclass(cls_name, specs, namespace={"split": split, "validate": validate})
    merged.__doc__ = (f"Hyperparameters of {base.name}+{rule.name}: the base's ({base.Hparams.__name__}) "
                      f"and the rule's ({rule.Hparams.__name__}).\n\n{base.Hparams.__doc__ or ''}\n\n{rule.Hparams.__doc__ or ''}")
    return merged


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

    def train_step(self, batch: Batch, step: int, stepper) -> dict[str, float]:
        return self.rule.train_step(batch, step, stepper)

    def after_step(self, step: int) -> None:
        base.after_step(self, step)
        self.rule.after_step(step)

    def state_dict(self) -> dict:
        return {"base": base.state_dict(self), "rule": self.rule.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        base.load_state_dict(self, state["base"])
        self.rule.load_state_dict(state["rule"])

    def holdout_batch_size(self) -> int:
        return self.rule.holdout_batch_size()

    def holdout_mode(self) -> str:
        return self.rule.holdout_mode()

    def holdout_fraction(self) -> float:
        return self.rule.holdout_fraction()

    name = f"{base.name}+{rule.name}"
    cls = type(f"{base.__name__}With{rule.__name__}", (base,), {
        "name": name, "Hparams": merged, "base_class": base, "rule_class": rule,
        "description": f"{base.description} + {rule.description}",
        "__doc__": f"{name}: {rule.name} acting on {base.name}.\n\n{rule.__doc__ or ''}",
        "__init__": __init__, "train_step": train_step, "after_step": after_step, "state_dict": state_dict,
        "load_state_dict": load_state_dict, "holdout_batch_size": holdout_batch_size,
        "holdout_mode": holdout_mode, "holdout_fraction": holdout_fraction,
        "__module__": rule.__module__,
    })
    _CACHE[key] = cls
    return cls
