"""Searchable hyperparameters of each method, read from the one place they are declared.

Every algorithm's ``Hparams`` dataclass declares the range and scale of each searchable
field in its metadata (``field(default=..., metadata={"range": (low, high), "scale": ...})``),
with the paper it comes from in the class docstring. This module turns those into search
spaces (for Optuna through :func:`to_optuna`, used by ``python -m bench.tune``) and adds the
number of tunable hyperparameters the papers report (Meta-Semi Table 2, "#HPs").

The papers' counts are class attributes too (``paper_hps`` of an algorithm or a meta rule,
with their sources in comments there). A composed method ``BASE+RULE`` (a base method under
a meta rule) has the merged ``Hparams`` of its base and rule, so its space is the union of
theirs with no extra code here; its #HPs is the base's count plus the rule's.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from algorithms import get_algorithm
from algorithms.hparams import ConfigError


@dataclass(frozen=True)
class Param:
    """One searchable hyperparameter: default, closed range [low, high], scale, and whether
    it takes integer values (e.g. MixMatch's K)."""

    default: float
    low: float
    high: float
    scale: Literal["linear", "log"] = "linear"
    integer: bool = False


@dataclass(frozen=True)
class Space:
    algorithm: str
    params: dict[str, Param] = field(default_factory=dict)
    paper_hps: int | None = None


def paper_hps(algorithm: str) -> int | None:
    """Papers' count of tunable hyperparameters (the class's ``paper_hps``); for ``BASE+RULE``
    the sum of both counts (None if either is unknown). ConfigError for unknown names."""
    return get_algorithm(algorithm).paper_hps


def space_for(algorithm: str) -> Space:
    """The search space of a registered algorithm (ConfigError for unknown names)."""
    cls = get_algorithm(algorithm)
    hints = typing.get_type_hints(cls.Hparams)
    params = {}
    for f in dataclasses.fields(cls.Hparams):
        if "range" in f.metadata:
            low, high = f.metadata["range"]
            params[f.name] = Param(f.default, low, high, f.metadata.get("scale", "linear"), hints.get(f.name) is int)
    return Space(algorithm, params, paper_hps(algorithm))


def select(space: Space, names: list[str] | None) -> Space:
    """``space`` restricted to ``names`` (all when None); ConfigError for a name not in it."""
    if names is None:
        return space
    for n in names:
        if n not in space.params:
            valid = ", ".join(space.params) or "none"
            raise ConfigError(f"{space.algorithm} has no searchable hyperparameter {n!r} (valid: {valid})")
    return dataclasses.replace(space, params={n: space.params[n] for n in names})


def check_value(space: Space, name: str, value: float) -> float | int:
    """``value`` as the parameter's type if it lies in the space's range; ConfigError otherwise."""
    select(space, [name])
    p = space.params[name]
    if not math.isfinite(value) or not p.low <= value <= p.high:
        raise ConfigError(f"{space.algorithm} {name}={value:g} is outside its range [{p.low:g}, {p.high:g}]")
    if p.integer:
        if float(value) != int(value):
            raise ConfigError(f"{space.algorithm} {name} takes integer values, got {value:g}")
        return int(value)
    return float(value)


def to_optuna(space: Space) -> dict[str, Any]:
    """Optuna distributions of the space's parameters, in declaration order.

    Log-scaled ranges become ``log=True`` distributions (Optuna samples log-uniformly);
    integer parameters become ``IntDistribution``.
    """
    from optuna.distributions import FloatDistribution, IntDistribution

    out: dict[str, Any] = {}
    for name, p in space.params.items():
        log = p.scale == "log"
        if p.integer:
            out[name] = IntDistribution(int(p.low), int(p.high), log=log)
        else:
            out[name] = FloatDistribution(float(p.low), float(p.high), log=log)
    return out


def describe(space: Space) -> str:
    """One line per parameter: name, range, scale, default."""
    lines = []
    for name, p in space.params.items():
        kind = "int" if p.integer else "float"
        lines.append(f"{name}: {kind} in [{p.low:g}, {p.high:g}] ({p.scale}), default {p.default:g}")
    return "\n".join(lines)


__all__ = ["ConfigError", "Param", "Space", "check_value", "describe",
           "paper_hps", "select", "space_for", "to_optuna"]
