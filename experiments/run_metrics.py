"""The numbers of one run (issue 16): pure functions of a loaded :class:`~experiments.rundirs.Run`.

The primary outcome is greedy held-out success (``eval/success_greedy``).

=========================  ======================================================================
function                   meaning
=========================  ======================================================================
:func:`final_mean`         mean of ``key`` over the run's last :data:`LAST_EVALS` (3)
                           evaluations (``final_success``: of ``eval/success_greedy``); with
                           :func:`final_counts` the successes and episodes behind it
:func:`final_eval`         ``eval/final_<name>`` of the larger evaluation after the last step
                           (``eval.final_episodes`` episodes, logged in the last row;
                           :func:`final_eval_counts`); NaN when the run has none
:func:`auc`                mean of ``eval/success_greedy`` over all evaluations (area under the
                           learning curve as a fraction)
:func:`time_to_threshold`  ``(step, reached)``: the first step of :data:`HOLD` (3) consecutive
                           evaluations with ``eval/oracle_fraction >= threshold``; not reached:
                           censored at the first step of a streak cut short by the end of the run,
                           else at the last evaluation
:func:`stability_ratio`    level-adjusted stability of the main agent's training outcome
                           (``main/correct_rate``, the 0/1 part of the main reward
                           ``a1 + a2 c_M``; ``main/reward_mean`` for runs without it): the
                           observed variance of its step-to-step change over the variance
                           ``2 p (1 - p) / (B K)`` that binomial noise alone gives at level
                           ``p`` (the mean of the two steps); changes with ``p`` within
                           ``1 / (B K)`` of 0 or 1 left out. 1 = binomial noise of ``B K``
                           independent episodes; above 1: extra movement (learning, collapses,
                           and the ``K`` rollouts of a query sharing it)
:func:`collapses`          drops of the EMA (weight :data:`COLLAPSE_EMA` = 0.9 per step) of
                           ``main/reward_mean`` by more than :data:`COLLAPSE_DROP` (0.3) below its
                           running peak; the peak restarts after each counted drop
=========================  ======================================================================

Example:
    >>> ema([0.0, 1.0, 1.0], 0.5)  # debiased: 0, (0.5*0 + 0.5*1)/(1-0.25) ...
    [0.0, 0.6666666666666666, 0.8571428571428571]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from experiments.rundirs import Run

__all__ = [
    "COLLAPSE_DROP",
    "COLLAPSE_EMA",
    "HOLD",
    "LAST_EVALS",
    "auc",
    "collapses",
    "ema",
    "ema_weight",
    "final_counts",
    "final_eval",
    "final_eval_counts",
    "final_mean",
    "final_success",
    "stability_ratio",
    "steps_to_threshold",
    "time_to_threshold",
]

LAST_EVALS = 3
"""evaluations averaged into a run's final value"""
HOLD = 3
"""consecutive evaluations a threshold must hold to count as reached"""
COLLAPSE_EMA = 0.9
"""EMA weight (per step) of the reward curve whose drops count as collapses"""
COLLAPSE_DROP = 0.3
"""a collapse: the EMA falls more than this below its running peak"""


def ema(y: Sequence[float], weight: float) -> list[float]:
    """Debiased exponential moving average (as TensorBoard's smoothing): ``weight`` in [0, 1),
    0 = no smoothing."""
    out, acc = [], 0.0
    for i, v in enumerate(y):
        acc = weight * acc + (1 - weight) * v
        out.append(acc / (1 - weight ** (i + 1)) if weight > 0 else v)
    return out


def ema_weight(n: int) -> float:
    """Smoothing weight for a curve of ``n`` points: 0.9 for long runs (>= 40 points), less for
    short ones so that the smoothed line does not lag behind the whole run."""
    return float(min(0.9, max(0.0, 1.0 - 4.0 / max(n, 1))))


def _eval_episodes(run: Run) -> int:
    """``eval.episodes`` of the run's config (0 when absent)."""
    return int(run.config.get("eval", {}).get("episodes", 0) or 0)


def final_mean(run: Run, key: str, last: int = LAST_EVALS) -> float:
    """Mean of ``key`` over the run's last ``last`` evaluations (NaN if it has none)."""
    _, y = run.series(key)
    return float(y[-last:].mean()) if len(y) else math.nan


def final_success(run: Run, key: str = "eval/success_greedy", last: int = LAST_EVALS) -> float:
    """The run's final success: :func:`final_mean` of ``key``."""
    return final_mean(run, key, last)


def final_counts(
    run: Run, key: str = "eval/success_greedy", last: int = LAST_EVALS
) -> tuple[int, int]:
    """``(successes, episodes)`` pooled over the last ``last`` evaluations (``eval.episodes``
    each; ``(0, 0)`` when the config does not say or the run never evaluated)."""
    _, y = run.series(key)
    n = _eval_episodes(run)
    y = y[-last:]
    return int(round(float(y.sum()) * n)), n * len(y)


def final_eval(run: Run, name: str = "success_greedy") -> float:
    """``eval/final_<name>`` of the evaluation after the last step: read from the run's last
    row only (a resumed run's earlier final evaluation does not count); NaN if absent."""
    v = run.rows[-1].get(f"eval/final_{name}") if run.rows else None
    return float(v) if isinstance(v, int | float) and math.isfinite(v) else math.nan


def final_eval_counts(run: Run) -> tuple[int, int]:
    """``(successes, episodes)`` of the final evaluation's greedy success (``(0, 0)``: none)."""
    s, n = final_eval(run), final_eval(run, "episodes")
    if math.isnan(s) or math.isnan(n):
        return 0, 0
    return int(round(s * n)), int(n)


def auc(run: Run, key: str = "eval/success_greedy") -> float:
    """Area under the learning curve as a fraction: mean of ``key`` over evaluation points."""
    _, y = run.series(key)
    return float(y.mean()) if len(y) else math.nan


def time_to_threshold(
    run: Run, threshold: float = 0.9, hold: int = HOLD, key: str = "eval/oracle_fraction"
) -> tuple[int, bool]:
    """``(step, True)``: the first 1-based step of ``hold`` consecutive evaluations with
    ``key >= threshold``; ``(step, False)``: censored (not reached), ``step`` the first step of a
    streak the end of the run cut short, else the last evaluation (0 without any)."""
    x, y = run.series(key)
    ok = y >= threshold
    start = None
    for i, hit in enumerate(ok):
        if not hit:
            start = None
            continue
        start = i if start is None else start
        if i - start + 1 >= hold:
            return int(x[start]), True
    if start is not None:
        return int(x[start]), False
    return (int(x[-1]) if len(x) else 0), False


def steps_to_threshold(run: Run, threshold: float = 0.9, hold: int = HOLD) -> int | None:
    """:func:`time_to_threshold`'s step when reached, else None."""
    step, reached = time_to_threshold(run, threshold, hold)
    return step if reached else None


def stability_ratio(run: Run, key: str | None = None) -> float:
    """Level-adjusted stability of ``key`` (default ``main/correct_rate``, else
    ``main/reward_mean``; see the module docstring); NaN with fewer than 2 usable changes or an
    unknown batch."""
    if key is None:
        has = any("main/correct_rate" in r for r in run.rows)
        key = "main/correct_rate" if has else "main/reward_mean"
    _, y = run.series(key)
    n = run.batch[0] * run.batch[1]
    if len(y) < 3 or n <= 0:
        return math.nan
    d = np.diff(y)
    p = (y[1:] + y[:-1]) / 2
    keep = (p >= 1 / n) & (p <= 1 - 1 / n)
    if keep.sum() < 2:
        return math.nan
    expected = float(np.mean(2 * p[keep] * (1 - p[keep]) / n))
    return float(d[keep].var(ddof=1) / expected)


def collapses(
    run: Run,
    key: str = "main/reward_mean",
    weight: float = COLLAPSE_EMA,
    drop: float = COLLAPSE_DROP,
) -> int:
    """Drops of the EMA of ``key`` by more than ``drop`` below its running peak (the peak
    restarts at the value where a drop was counted); 0 without points."""
    _, y = run.series(key)
    count, peak = 0, -math.inf
    for v in ema(y, weight):
        peak = max(peak, v)
        if peak - v > drop:
            count += 1
            peak = v
    return count
