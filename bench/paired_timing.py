"""Paired timing of several step functions in one process: interleaved rounds after a shared
warm-up, and the median of per-round ratios with a bootstrap interval over the rounds.

Timing A and B in separate runs compares two states of a machine as much as two programs;
timing them alternately in the same process pairs every A with a B taken under the same
load, so a ratio per round is a paired estimate and its median is robust to the rounds a
neighbour's burst spoiled.
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np


def interleaved_times(steps: dict[str, Callable[[int], None]], rounds: int, warmup: int) -> dict[str, list[float]]:
    """Seconds per call of every ``steps[name](i)``, ``rounds`` calls each, after ``warmup`` untimed ones.

    Each round calls every function once (with the round's index ``i``), the order rotated by
    one position from round to round, so every function takes every position equally often
    (caches warmed by the previous caller, thermal state) over ``len(steps)`` rounds.
    Returns ``{name: [seconds per round]}``, rounds in order.
    """
    names = list(steps)
    for i in range(warmup):
        for name in names:
            steps[name](i)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            t0 = time.perf_counter()
            steps[name](warmup + r)
            times[name].append(time.perf_counter() - t0)
    return times


def median_ratio(num: list[float], den: list[float], level: float = 0.95, resamples: int = 2000,
                 seed: int = 0) -> tuple[float, float, float]:
    """(median, low, high) of the paired ratios num[i] / den[i], with a percentile bootstrap
    interval at ``level`` over the pairs (``resamples`` resamplings, seeded)."""
    if len(num) != len(den) or not num:
        raise ValueError(f"need equally many paired times, got {len(num)} and {len(den)}")
    ratios = np.asarray(num, dtype=float) / np.asarray(den, dtype=float)
    rng = np.random.default_rng(seed)
    boots = np.median(rng.choice(ratios, size=(resamples, ratios.size), replace=True), axis=1)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(boots, [tail, 1.0 - tail])
    return float(np.median(ratios)), float(low), float(high)
