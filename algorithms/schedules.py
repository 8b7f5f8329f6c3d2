"""Weight schedules lambda(t) for unlabeled terms."""
from __future__ import annotations

import math


def ramp_up(step: int, total_steps: int, fraction: float, kind: str = "sigmoid") -> float:
    """Ramp-up factor in [0, 1] reached after ``fraction * total_steps`` steps.

    ``sigmoid``: exp(-5 (1 - t)^2) (Laine & Aila 2017, Mean Teacher); ``linear``: t
    (MixMatch, L2I); ``none``: 1 throughout.
    """
    if kind == "none" or fraction <= 0:
        return 1.0
    t = min(1.0, max(0.0, step / max(1.0, fraction * total_steps)))
    if kind == "linear":
        return t
    if kind == "sigmoid":
        return math.exp(-5.0 * (1.0 - t) ** 2)
    raise ValueError(f"unknown ramp-up kind {kind!r}: choose sigmoid, linear or none")
