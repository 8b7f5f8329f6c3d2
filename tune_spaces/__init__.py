"""Searchable hyperparameters of each method, read from the one place they are declared.

Every algorithm's ``Hparams`` dataclass declares the range and scale of each searchable
field in its metadata (``field(default=..., metadata={"range": (low, high), "scale": ...})``),
with the paper it comes from in the class docstring. This module turns those into search
spaces and adds the number of tunable hyperparameters the papers report (Meta-Semi Table 2,
"#HPs"). Ray Tune / Optuna searches (``bench.tune``, a later issue) read these.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from algorithms import get_algorithm

# Meta-Semi Table 2 "#HPs" (MT 2, VAT 2, MixMatch 4, Meta-Semi 1); the others count what the
# methods' papers tune (FixMatch: tau, lambda_u; ICT: alpha, w; Pi/TE: w_max (+ alpha for TE)).
PAPER_HPS: dict[str, int] = {
    "supervised": 0, "supervised_mixup": 1, "pseudo_label": 2, "mean_teacher": 2, "vat": 2, "mixmatch": 4,
    "meta_semi": 1, "fixmatch": 2, "ict": 2, "pi_model": 1, "temporal_ensembling": 2,
}


@dataclass(frozen=True)
class Param:
    default: float
    low: float
    high: float
    scale: Literal["linear", "log"] = "linear"


@dataclass(frozen=True)
class Space:
    algorithm: str
    params: dict[str, Param] = field(default_factory=dict)
    paper_hps: int | None = None


def space_for(algorithm: str) -> Space:
    """The search space of a registered algorithm (ConfigError for unknown names)."""
    cls = get_algorithm(algorithm)
    params = {}
    for f in dataclasses.fields(cls.Hparams):
        if "range" in f.metadata:
            low, high = f.metadata["range"]
            params[f.name] = Param(f.default, low, high, f.metadata.get("scale", "linear"))
    return Space(algorithm, params, PAPER_HPS.get(algorithm))
