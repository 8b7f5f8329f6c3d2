"""Paired statistics over seeds: is method A's error lower than method B's on the same splits?

The input is one difference per seed, ``d_i = error_A(seed i) - error_B(seed i)`` (negative:
A is better), both runs of a pair on the same labeled split, validation split and training
seed. :func:`paired_summary` gives the mean difference with two 95% intervals:

* **paired t**: ``mean +- t_{0.975, n-1} * sd / sqrt(n)`` (exact under normally distributed
  differences; the default for the verdict);
* **bootstrap percentile** interval of the mean: exact (every one of the ``n**n`` equally
  likely resamples enumerated) when ``n**n <= EXACT_BOOTSTRAP_MAX``, else ``n_boot`` seeded
  Monte-Carlo resamples. It assumes nothing about the shape of the differences, but with few
  seeds it is too narrow (it cannot see variation the seeds did not show).

The verdict is ``better`` / ``worse`` only when *both* intervals exclude 0 on the same side,
otherwise ``no evidence either way``. Fewer than :data:`MIN_PAIRS_FOR_VERDICT` pairs get no
verdict: with two, the bootstrap has three distinct means and two equal differences (common
on small test sets, whose errors move in steps of 1/N) would make a zero-width t interval.
Fewer than two pairs give no interval at all.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

#: largest n**n resample count enumerated exactly (n <= 6); beyond it Monte-Carlo resampling
EXACT_BOOTSTRAP_MAX = 50_000
MIN_PAIRS_FOR_VERDICT = 3
BETTER, WORSE, NO_EVIDENCE, TOO_FEW = "better", "worse", "no evidence either way", "too few pairs"


@dataclass(frozen=True)
class PairedSummary:
    """Statistics of paired differences (same unit as the input; fractions for errors).

    ``n_improved`` / ``n_worse`` / ``n_tied`` count pairs with d < 0 / d > 0 / d == 0;
    ``sign`` is "-" (A lower on average), "+" or "0"; intervals are NaN for n < 2.
    """

    n: int
    mean: float
    std: float
    t_low: float
    t_high: float
    boot_low: float
    boot_high: float
    boot_exact: bool
    n_improved: int
    n_worse: int
    n_tied: int
    sign: str
    verdict: str

    def as_dict(self) -> dict:
        return asdict(self)


def t_interval(diffs: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Two-sided paired-t interval of the mean of ``diffs`` [n]; (NaN, NaN) for n < 2."""
    from scipy import stats

    d = _clean(diffs)
    if d.size < 2:
        return math.nan, math.nan
    half = stats.t.ppf(0.5 + level / 2, d.size - 1) * d.std(ddof=1) / math.sqrt(d.size)
    m = float(d.mean())
    return m - half, m + half


def bootstrap_means(diffs: Sequence[float], n_boot: int = 10_000, seed: int = 0) -> tuple[np.ndarray, bool]:
    """Means of bootstrap resamples of ``diffs`` [n] and whether they are the exact set.

    Exact: all ``n**n`` ordered resamples (each equally likely), when that is at most
    :data:`EXACT_BOOTSTRAP_MAX`; otherwise ``n_boot`` resamples from a generator seeded with
    ``seed`` (the same input gives the same interval).
    """
    d = _clean(diffs)
    n = d.size
    if n == 0:
        return np.empty(0), True
    if n ** n <= EXACT_BOOTSTRAP_MAX:
        idx = np.array(list(itertools.product(range(n), repeat=n)))
        return d[idx].mean(axis=1), True
    rng = np.random.default_rng(seed)
    return d[rng.integers(0, n, size=(n_boot, n))].mean(axis=1), False


def bootstrap_interval(diffs: Sequence[float], level: float = 0.95, n_boot: int = 10_000,
                       seed: int = 0) -> tuple[float, float, bool]:
    """Percentile bootstrap interval of the mean: (low, high, exact); NaN for n < 2."""
    means, exact = bootstrap_means(diffs, n_boot, seed)
    if _clean(diffs).size < 2:
        return math.nan, math.nan, exact
    alpha = (1 - level) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return float(lo), float(hi), exact


def verdict(t_low: float, t_high: float, boot_low: float, boot_high: float, n: int) -> str:
    """``better`` if both intervals lie below 0, ``worse`` if both above, else no evidence;
    ``too few pairs`` below :data:`MIN_PAIRS_FOR_VERDICT` pairs."""
    if n < MIN_PAIRS_FOR_VERDICT or any(math.isnan(v) for v in (t_low, t_high, boot_low, boot_high)):
        return TOO_FEW
    if t_high < 0 and boot_high < 0:
        return BETTER
    if t_low > 0 and boot_low > 0:
        return WORSE
    return NO_EVIDENCE


def paired_summary(diffs: Sequence[float], level: float = 0.95, n_boot: int = 10_000, seed: int = 0) -> PairedSummary:
    """Mean, sample std (ddof 1), t and bootstrap intervals, counts and verdict of ``diffs`` [n].

    Non-finite differences are dropped (a diverged run has no error to compare).
    """
    d = _clean(diffs)
    n = int(d.size)
    mean = float(d.mean()) if n else math.nan
    std = float(d.std(ddof=1)) if n >= 2 else math.nan
    t_lo, t_hi = t_interval(d, level)
    b_lo, b_hi, exact = bootstrap_interval(d, level, n_boot, seed)
    sign = "0" if n == 0 or mean == 0 else ("-" if mean < 0 else "+")
    return PairedSummary(n, mean, std, t_lo, t_hi, b_lo, b_hi, exact, int((d < 0).sum()), int((d > 0).sum()),
                         int((d == 0).sum()), sign, verdict(t_lo, t_hi, b_lo, b_hi, n))


def _clean(diffs: Sequence[float]) -> np.ndarray:
    d = np.asarray(list(diffs), dtype=float)
    return d[np.isfinite(d)]
