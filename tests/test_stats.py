"""Paired statistics against scipy and against hand computations."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats as sps

from results.stats import (BETTER, NO_EVIDENCE, TOO_FEW, WORSE, bootstrap_interval, bootstrap_means, paired_summary,
                           t_interval)


def test_t_interval_matches_scipy_and_the_textbook_formula():
    rng = np.random.default_rng(0)
    for n in (2, 3, 5, 10, 31):
        d = rng.normal(-0.02, 0.03, n)
        lo, hi = t_interval(d)
        ref = sps.t.interval(0.95, n - 1, loc=d.mean(), scale=sps.sem(d))
        assert (lo, hi) == pytest.approx(ref, rel=1e-12)
        # and the same by hand: mean +- t_{.975, n-1} s / sqrt(n)
        half = sps.t.ppf(0.975, n - 1) * d.std(ddof=1) / math.sqrt(n)
        assert lo == pytest.approx(d.mean() - half) and hi == pytest.approx(d.mean() + half)
        # the paired t test's p-value is below 0.05 exactly when the interval excludes 0
        p = sps.ttest_rel(d + 0.1, np.full(n, 0.1)).pvalue
        assert (p < 0.05) == (hi < 0 or lo > 0)


def test_hand_computed_three_seed_example():
    # errors of a rule and its base on three seeds (fractions)
    rule, base = np.array([0.10, 0.12, 0.11]), np.array([0.13, 0.14, 0.15])
    d = rule - base  # -0.03, -0.02, -0.04: mean -0.03, sd 0.01
    s = paired_summary(d)
    assert s.n == 3 and s.mean == pytest.approx(-0.03) and s.std == pytest.approx(0.01)
    # t_{0.975, 2} = 4.302652729911275; half width = 4.3027 * 0.01 / sqrt(3) = 0.0248414
    assert s.t_low == pytest.approx(-0.03 - 0.0248414, abs=1e-7) and s.t_high == pytest.approx(-0.03 + 0.0248414, abs=1e-7)
    assert (s.n_improved, s.n_worse, s.n_tied, s.sign) == (3, 0, 0, "-")
    # exact bootstrap: the 27 resamples of 3 values; their means are (a+b+c)/3 over all ordered triples
    means = sorted(sum(t) / 3 for t in itertools.product(d, repeat=3))
    assert s.boot_exact and (s.boot_low, s.boot_high) == pytest.approx(tuple(np.quantile(means, [0.025, 0.975])))
    assert s.boot_low >= -0.04 - 1e-12 and s.boot_high <= -0.02 + 1e-12  # a mean of the data's own values
    assert s.verdict == BETTER


def test_verdicts_need_both_intervals_and_three_pairs():
    assert paired_summary([0.03, 0.02, 0.04]).verdict == WORSE
    assert paired_summary([-0.05, 0.04, -0.01]).verdict == NO_EVIDENCE  # spans 0
    assert paired_summary([-0.03, -0.03]).verdict == TOO_FEW  # a zero-width t interval from two equal differences
    one = paired_summary([-0.02])
    assert one.verdict == TOO_FEW and math.isnan(one.t_low) and math.isnan(one.std) and one.mean == -0.02
    empty = paired_summary([])
    assert empty.n == 0 and math.isnan(empty.mean) and empty.sign == "0"
    # a diverged run's NaN is dropped, not compared
    assert paired_summary([-0.03, float("nan"), -0.02, -0.04]).n == 3
    # the bootstrap excludes 0 (its upper end, by hand: -1/60 + 0.35 * (0.02 + 1/60) = -0.00383) while the t
    # interval does not: no evidence
    s = paired_summary([-0.10, -0.09, 0.02])
    assert s.boot_high == pytest.approx(-1 / 60 + 0.35 * (0.02 + 1 / 60)) and s.boot_high < 0 < s.t_high
    assert s.verdict == NO_EVIDENCE


def test_exact_bootstrap_up_to_six_seeds_then_seeded_monte_carlo():
    d = [0.01, -0.02, 0.03, 0.0]
    means, exact = bootstrap_means(d)
    assert exact and means.size == 4 ** 4
    assert sorted(means) == pytest.approx(sorted(np.mean(t) for t in itertools.product(d, repeat=4)))
    rng = np.random.default_rng(1)
    big = rng.normal(0, 1, 12)
    lo1, hi1, ex = bootstrap_interval(big, n_boot=4000, seed=3)
    lo2, hi2, _ = bootstrap_interval(big, n_boot=4000, seed=3)
    assert not ex and (lo1, hi1) == (lo2, hi2)  # seeded: the same input gives the same interval
    # the percentile interval agrees with scipy's percentile bootstrap to Monte-Carlo accuracy
    ref = sps.bootstrap((big,), np.mean, n_resamples=20000, method="percentile", random_state=0).confidence_interval
    assert lo1 == pytest.approx(ref.low, abs=0.08) and hi1 == pytest.approx(ref.high, abs=0.08)
