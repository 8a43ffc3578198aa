"""Intervals and tests across seeds (issue 16): pure functions of per-seed numbers, on
``scipy.stats``.

=============================  ===================================================================
function                       what it computes
=============================  ===================================================================
:func:`bootstrap_ci`           the mean over seeds and its 95% *seed-bootstrap percentile*
                               interval: seeds resampled with replacement
                               (``scipy.stats.bootstrap``, ``method="percentile"``, 9,999
                               resamples from a fixed generator), so the interval lies inside the
                               range of the per-seed values (a rate's stays in [0, 1])
:func:`clopper_pearson`        the exact binomial interval of k successes in n episodes
                               (``binomtest(k, n).proportion_ci(method="exact")``); 0 of 1,280
                               gives [0, 0.0029]
:func:`rate_ci`                a success rate over seeds: the seed bootstrap, or Clopper-Pearson
                               over the pooled episodes when it cannot vary (one seed, or every
                               seed at the same value, e.g. all at 0 or all at 1)
:func:`paired_diff_ci`         mean of the per-seed differences ``a - b`` (runs of one seed share
                               their evaluation queries) and its seed-pair bootstrap interval
:func:`paired_ratio_ci`        ``mean(a) / mean(b) - 1`` with its seed-pair bootstrap interval
:func:`paired_permutation_p`   two-sided exact paired permutation test of the mean difference:
                               all ``2**n`` swaps within seed pairs
                               (``scipy.stats.permutation_test``, ``permutation_type="samples"``,
                               ``n_resamples=inf``; Monte Carlo, 99,999 resamples, above 16 pairs)
:func:`smallest_p`             the smallest p that test can give with n pairs: ``2 / 2**n``
                               (5 pairs: 1/16 = 0.0625, so 5 seeds can never reach 0.05; 10 pairs:
                               1/512 = 0.00195)
:func:`holm`                   Holm's step-down adjustment of the p-values of one table
:func:`bootstrap_band`         the same percentile interval for every column of a curve of seeds
                               (one resampling of the seeds shared by all columns; NaN cells
                               ignored; for figures)
:func:`km_median`              the Kaplan-Meier median of a time with right-censoring
                               (``scipy.stats.ecdf`` of ``CensoredData``); None when the survival
                               curve never falls to 0.5
=============================  ===================================================================

Example:
    >>> round(clopper_pearson(0, 1280)[1], 4), smallest_p(5)
    (0.0029, 0.0625)
    >>> holm([0.01, 0.04, None, 0.03])  # 3 tests: 3 x 0.01, then max(2 x 0.03, 0.03), ...
    [0.03, 0.06, None, 0.06]
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
from scipy import stats as sps

__all__ = [
    "LEVEL",
    "bootstrap_band",
    "bootstrap_ci",
    "clopper_pearson",
    "holm",
    "km_median",
    "paired_diff_ci",
    "paired_permutation_p",
    "paired_ratio_ci",
    "rate_ci",
    "smallest_p",
]

LEVEL = 0.95
"""confidence level of every interval"""
RESAMPLES = 9_999
"""bootstrap resamples"""
EXACT_PAIRS = 16
"""up to this many seed pairs the permutation test enumerates all 2**n swaps"""
_SEED = 0
"""the bootstrap's and the Monte Carlo test's generator seed: a report is reproducible"""

Interval = tuple[float, float, float]
"""``(estimate, lo, hi)``; NaN where undefined"""


def _finite(values: Sequence[float | None]) -> np.ndarray:
    return np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)


def _pairs(a: Sequence[float | None], b: Sequence[float | None]) -> tuple[np.ndarray, np.ndarray]:
    """The pairs where both values are finite."""
    keep = [
        (x, y)
        for x, y in zip(a, b, strict=True)
        if x is not None and y is not None and math.isfinite(x) and math.isfinite(y)
    ]
    arr = np.asarray(keep, dtype=float).reshape(-1, 2)
    return arr[:, 0], arr[:, 1]


def _bootstrap(data: tuple[np.ndarray, ...], stat, paired: bool) -> tuple[float, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # degenerate resamples: the interval is still defined
        res = sps.bootstrap(
            data,
            stat,
            paired=paired,
            vectorized=True,
            confidence_level=LEVEL,
            n_resamples=RESAMPLES,
            method="percentile",
            random_state=np.random.default_rng(_SEED),
        )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def bootstrap_ci(values: Sequence[float | None]) -> Interval:
    """Mean over seeds and its seed-bootstrap percentile interval (NaN values ignored). One
    value: ``(v, nan, nan)``; all values equal: ``(v, v, v)``; none: all NaN."""
    v = _finite(values)
    if len(v) == 0:
        return math.nan, math.nan, math.nan
    m = float(v.mean())
    if len(v) == 1:
        return m, math.nan, math.nan
    if np.all(v == v[0]):
        return m, m, m
    lo, hi = _bootstrap((v,), lambda x, axis: np.mean(x, axis=axis), paired=False)
    return m, min(lo, m), max(hi, m)


def bootstrap_band(
    Y: np.ndarray, resamples: int = 2_000
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(mean, lo, hi)`` per column of ``Y`` ``(num_seeds, num_points)`` (NaN: the seed has no
    point there): the mean over seeds and its seed-bootstrap percentile interval (NaN where
    fewer than 2 seeds have the point). Columns are resampled jointly (the same seeds), with a
    fixed generator."""
    Y = np.asarray(Y, dtype=float)
    n = np.sum(np.isfinite(Y), axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
        m = np.nanmean(Y, axis=0)
        idx = np.random.default_rng(_SEED).integers(0, Y.shape[0], (resamples, Y.shape[0]))
        means = np.nanmean(Y[idx], axis=1)  # (resamples, num_points)
        q = (1 - LEVEL) / 2
        quantile = np.nanquantile if np.isnan(means).any() else np.quantile
        lo, hi = quantile(means, [q, 1 - q], axis=0)
    few = n < 2
    lo[few], hi[few] = np.nan, np.nan
    return m, np.minimum(lo, m), np.maximum(hi, m)


def clopper_pearson(k: int, n: int) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval of a rate with ``k`` successes in ``n`` trials."""
    if n <= 0:
        return math.nan, math.nan
    ci = sps.binomtest(int(k), int(n)).proportion_ci(confidence_level=LEVEL, method="exact")
    return float(ci.low), float(ci.high)


def rate_ci(successes: Sequence[int], episodes: Sequence[int]) -> tuple[float, float, float, str]:
    """A success rate over seeds, from each seed's ``successes`` of its ``episodes``:
    ``(mean of the per-seed rates, lo, hi, method)``. ``method`` is ``"bootstrap"``
    (:func:`bootstrap_ci` of the rates) when the seeds differ, else ``"exact"``
    (:func:`clopper_pearson` of the pooled counts: one seed, or all seeds at one value).
    Seeds without episodes are left out; none left: NaNs and ``""``."""
    kn = [(int(k), int(n)) for k, n in zip(successes, episodes, strict=True) if n > 0]
    if not kn:
        return math.nan, math.nan, math.nan, ""
    rates = [k / n for k, n in kn]
    m, lo, hi = bootstrap_ci(rates)
    if len(rates) > 1 and lo < hi:
        return m, lo, hi, "bootstrap"
    lo, hi = clopper_pearson(sum(k for k, _ in kn), sum(n for _, n in kn))
    return m, lo, hi, "exact"


def paired_diff_ci(a: Sequence[float | None], b: Sequence[float | None]) -> Interval:
    """Mean of ``a[i] - b[i]`` over the seed pairs with both values, and its seed-pair
    bootstrap percentile interval (< 2 pairs: no interval)."""
    x, y = _pairs(a, b)
    return bootstrap_ci(list(x - y))


def paired_ratio_ci(a: Sequence[float | None], b: Sequence[float | None]) -> Interval:
    """``mean(a) / mean(b) - 1`` over the seed pairs with both values (a relative change:
    -0.1 is 10% less) and its seed-pair bootstrap percentile interval; NaN when
    ``mean(b) <= 0``."""
    x, y = _pairs(a, b)
    if len(x) == 0 or y.mean() <= 0:
        return math.nan, math.nan, math.nan
    est = float(x.mean() / y.mean() - 1)
    if len(x) < 2:
        return est, math.nan, math.nan
    if np.all(x == x[0]) and np.all(y == y[0]):
        return est, est, est

    def stat(u: np.ndarray, v: np.ndarray, axis: int) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.mean(u, axis=axis) / np.mean(v, axis=axis) - 1

    lo, hi = _bootstrap((x, y), stat, paired=True)
    return est, min(lo, est), max(hi, est)


def smallest_p(n_pairs: int) -> float:
    """The smallest two-sided p of :func:`paired_permutation_p` with ``n_pairs`` pairs: the
    observed assignment and its mirror image out of ``2**n`` (1 for n = 0)."""
    return min(1.0, 2.0 / 2.0**n_pairs) if n_pairs > 0 else 1.0


def paired_permutation_p(a: Sequence[float | None], b: Sequence[float | None]) -> float | None:
    """Two-sided p of the paired permutation test of ``mean(a - b) = 0`` over the seed pairs
    with both values (exact: every swap within pairs; Monte Carlo above :data:`EXACT_PAIRS`).
    None without a pair; 1.0 with one pair or when every difference is 0."""
    x, y = _pairs(a, b)
    if len(x) == 0:
        return None
    if len(x) == 1 or np.all(x == y):  # one pair: +d and -d are equally extreme
        return 1.0
    exact = len(x) <= EXACT_PAIRS
    res = sps.permutation_test(
        (x, y),
        lambda u, v, axis: np.mean(u - v, axis=axis),
        permutation_type="samples",
        vectorized=True,
        n_resamples=np.inf if exact else 99_999,
        alternative="two-sided",
        random_state=np.random.default_rng(_SEED),
    )
    return float(min(1.0, res.pvalue))


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values, in the input order (None stays None and does not
    count as a test): the i-th smallest of m is ``max over j <= i of (m - j + 1) p_(j)``,
    capped at 1. Controls the family-wise error rate of the table's comparisons."""
    idx = [i for i, p in enumerate(pvalues) if p is not None and math.isfinite(p)]
    order = sorted(idx, key=lambda i: pvalues[i])  # type: ignore[arg-type, return-value]
    out: list[float | None] = [None] * len(pvalues)
    m, running = len(order), 0.0
    for j, i in enumerate(order):
        running = max(running, min(1.0, (m - j) * float(pvalues[i])))  # type: ignore[arg-type]
        out[i] = running
    return out


def km_median(times: Sequence[float], reached: Sequence[bool]) -> float | None:
    """Kaplan-Meier median of a time to an event: ``times`` are the event times where
    ``reached``, else the censoring times (observation ended without the event). The smallest
    time at which the estimated survival is <= 0.5; None when it never gets there (more than
    half the seeds censored before any later event) or there is no time."""
    t = np.asarray(times, dtype=float)
    e = np.asarray(reached, dtype=bool)
    if len(t) == 0 or not e.any():
        return None
    sf = sps.ecdf(sps.CensoredData(uncensored=t[e], right=t[~e])).sf
    hit = np.nonzero(sf.probabilities <= 0.5)[0]
    return float(sf.quantiles[hit[0]]) if len(hit) else None
