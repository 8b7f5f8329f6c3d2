"""Searchable hyperparameters of each method: ranges and scales from the papers.

A space maps a hyperparameter name to (low, high, scale); ``paper_hps`` is the number of
tunable hyperparameters the papers report for the method (Meta-Semi Table 2, "#HPs").
Ray Tune / Optuna searches (``bench.tune``, a later issue) read these.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class Param:
    low: float
    high: float
    scale: Literal["linear", "log"] = "linear"
    source: str = ""


@dataclass(frozen=True)
class Space:
    algorithm: str
    params: dict[str, Param] = field(default_factory=dict)
    paper_hps: int = 0


SPACES: dict[str, Space] = {
    "supervised": Space("supervised", {}, 0),
    "pseudo_label": Space("pseudo_label", {
        "lambda_u": Param(0.1, 10.0, "log", "Lee 2013 / Oliver et al. 2018"),
        "threshold": Param(0.5, 0.99, "linear", "Oliver et al. 2018 use 0.95"),
    }, 2),
    "mean_teacher": Space("mean_teacher", {
        "lambda_u": Param(1.0, 100.0, "log", "Tarvainen & Valpola 2017 (class-summed squared error)"),
        "ema_decay": Param(0.9, 0.999, "log", "0.99 / 0.999 in the paper"),
    }, 2),  # Meta-Semi Table 2: MT has 2 tunable HPs
    "meta_semi": Space("meta_semi", {
        "beta": Param(0.1, 1.0, "linear", "Meta-Semi §4.1/4.3: beta in [0.1, 1]"),
    }, 1),  # Meta-Semi Table 2: 1
}


def space_for(algorithm: str) -> Space:
    """The search space of ``algorithm`` (KeyError with the valid names otherwise)."""
    try:
        return SPACES[algorithm]
    except KeyError:
        raise KeyError(f"no search space for {algorithm!r} (have: {', '.join(sorted(SPACES))})") from None
