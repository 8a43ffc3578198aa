"""experiments.stats_tests: intervals inside the metric's range, exact intervals and tests by
hand, Holm's monotonicity, Kaplan-Meier with censoring (properties with hypothesis)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from experiments import stats_tests as t

_FEW = settings(max_examples=25, deadline=None, derandomize=True)
rates = st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=1, max_size=8)


# ------------------------------------------------------------------------------ intervals
def test_clopper_pearson_hand_values():
    # 0 of 1,280: upper = 1 - 0.025**(1/1280) = 0.00288; 1,280 of 1,280: lower = 0.025**(1/1280)
    assert t.clopper_pearson(0, 1280) == (0.0, pytest.approx(1 - 0.025 ** (1 / 1280)))
    assert round(t.clopper_pearson(0, 1280)[1], 4) == 0.0029
    assert t.clopper_pearson(1280, 1280) == (pytest.approx(0.025 ** (1 / 1280)), 1.0)


@_FEW
@given(rates)
def test_bootstrap_interval_lies_within_the_per_seed_values(values):
    m, lo, hi = t.bootstrap_ci(values)
    if len(values) == 1:  # rule: one seed, no interval
        assert m == values[0] and math.isnan(lo) and math.isnan(hi)
    else:
        assert min(values) - 1e-12 <= lo <= m <= hi <= max(values) + 1e-12


@_FEW
@given(st.lists(st.tuples(st.integers(0, 300), st.integers(1, 300)), min_size=1, max_size=6))
def test_rate_interval_is_inside_0_1_and_holds_the_mean(kn):
    kn = [(min(k, n), n) for k, n in kn]
    m, lo, hi, method = t.rate_ci([k for k, _ in kn], [n for _, n in kn])
    assert 0.0 <= lo <= m <= hi <= 1.0
    rates_ = {k / n for k, n in kn}
    assert method == ("exact" if len(kn) == 1 or len(rates_) == 1 else "bootstrap")


def test_rate_interval_of_seeds_all_at_one_value_is_exact_over_the_pooled_episodes():
    # 5 seeds x 256 episodes all failed = 0 of 1,280
    assert t.rate_ci([0] * 5, [256] * 5) == (0.0, 0.0, pytest.approx(0.00288, abs=1e-5), "exact")


def test_paired_ratio_is_relative_change_of_the_means():
    # means 13.5 and 15: 13.5 / 15 - 1 = -0.1; every resample of the pairs gives -0.1 too
    assert t.paired_ratio_ci([9.0, 18.0], [10.0, 20.0]) == pytest.approx((-0.1, -0.1, -0.1))


def test_bootstrap_band_per_column_and_nan_with_fewer_than_2_seeds():
    Y = np.array([[0.0, 1.0, 0.2], [1.0, 1.0, np.nan]])
    m, lo, hi = t.bootstrap_band(Y)
    assert list(m) == [0.5, 1.0, 0.2] and lo[0] >= 0.0 and hi[0] <= 1.0 and lo[1] == hi[1] == 1
    assert math.isnan(lo[2]) and math.isnan(hi[2])  # one seed has the point


# ---------------------------------------------------------------------------------- tests
def test_smallest_p_of_the_paired_permutation_test():
    # n pairs, all differences positive and distinct: only the observed assignment and its
    # mirror image are as extreme among 2**n: p = 2 / 2**n
    assert t.smallest_p(5) == 1 / 16 == 0.0625  # 5 seeds can never reach 0.05
    assert t.smallest_p(10) == pytest.approx(1 / 512)
    for n in (3, 5, 7):
        a = list(np.arange(1, n + 1) + 10.0)
        assert t.paired_permutation_p(a, [0.0] * n) == pytest.approx(t.smallest_p(n))


def test_paired_permutation_hand_case_and_ties():
    # differences 1, 2: swap means 1.5, 0.5, -0.5, -1.5; |.| >= 1.5 twice in 4 -> p = 0.5
    assert t.paired_permutation_p([1.0, 2.0], [0.0, 0.0]) == 0.5
    assert t.paired_permutation_p([0.3, 0.3], [0.3, 0.3]) == 1.0  # no difference at all
    assert t.paired_permutation_p([1.0, None], [0.0, 0.5]) == 1.0  # one pair: p = 1
    assert t.paired_permutation_p([], []) is None


def test_holm_hand_case():
    # sorted 0.01, 0.03, 0.04 of m = 3: 3 x 0.01, max(0.03, 2 x 0.03), max(0.06, 1 x 0.04)
    assert t.holm([0.04, 0.01, None, 0.03]) == pytest.approx([0.06, 0.03, None, 0.06])


@_FEW
@given(st.lists(st.one_of(st.none(), st.floats(0.0, 1.0)), min_size=1, max_size=10))
def test_holm_is_monotone_and_never_below_the_raw_p(ps):
    adj = t.holm(ps)
    assert [a is None for a in adj] == [p is None for p in ps]
    pairs = sorted((p, a) for p, a in zip(ps, adj, strict=True) if p is not None)
    assert all(p <= a <= 1.0 for p, a in pairs)
    assert all(x[1] <= y[1] for x, y in zip(pairs, pairs[1:], strict=False))  # monotone


# ---------------------------------------------------------------------------- censoring
def test_km_median_with_censored_seeds():
    # events at 50, 100, 200; 2 censored at 500: S = 0.8, 0.6, 0.4 -> median 200
    assert t.km_median([50, 100, 200, 500, 500], [True, True, True, False, False]) == 200
    # 1 of 3 reached: S stays at 2/3 -> the median is not reached
    assert t.km_median([100, 500, 500], [True, False, False]) is None
    # a seed censored at 200 (before 300) leaves the risk set: S = 2/3, then 0 -> median 300
    assert t.km_median([100, 200, 300], [True, False, True]) == 300
    assert t.km_median([500, 500], [False, False]) is None
