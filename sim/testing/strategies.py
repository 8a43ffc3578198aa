"""Hypothesis strategies for GRPO math tests, importable by users' own test suites.

Needs ``hypothesis`` (a test dependency, not a runtime one). All arrays are numpy:

- :func:`rewards` ``(n,)`` float64: binary 0/1, discrete steps of 0.1, or floats rounded to
  3 decimals (so a non-constant group's std is far above any std floor).
- :func:`ragged_group_ids` ``(num_rows,)`` int64: 1..``max_groups`` groups of 1..``max_size``
  rows under sparse labels (non-contiguous), rows shuffled.
- :func:`grouped_rewards` ``(rewards, group_ids)``, the two above together.
- :func:`call_counts` ``(n_rollouts,)`` int64 d_k per rollout, zeros included.
- :func:`rollout_patterns` ``(rollout_ids, n_rollouts, target, seed)``: an alignment call, with
  ``rollout_ids`` ``(num_rows,)`` int64 (sorted or shuffled).

Example (in a user's test file)::

    from hypothesis import given
    from sim.testing.strategies import grouped_rewards

    @given(grouped_rewards())
    def test_my_advantages_are_centred(case):
        rewards, group_ids = case
        ...
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

__all__ = ["call_counts", "grouped_rewards", "ragged_group_ids", "rewards", "rollout_patterns"]


@st.composite
def rewards(draw: st.DrawFn, n: int, low: float = -10.0, high: float = 10.0) -> np.ndarray:
    """``(n,)`` float64 rewards: binary, 0.1 steps in [0, 1], or 3-decimal floats in [low, high]."""
    kind = draw(st.sampled_from(["binary", "steps", "floats"]))
    if kind == "binary":
        values = draw(st.lists(st.sampled_from([0.0, 1.0]), min_size=n, max_size=n))
    elif kind == "steps":
        values = [k / 10 for k in draw(st.lists(st.integers(0, 10), min_size=n, max_size=n))]
    else:
        floats = st.floats(low, high, allow_nan=False, allow_infinity=False)
        values = draw(st.lists(floats.map(lambda x: round(x, 3)), min_size=n, max_size=n))
    return np.asarray(values, dtype=np.float64)


@st.composite
def ragged_group_ids(draw: st.DrawFn, max_groups: int = 6, max_size: int = 8) -> np.ndarray:
    """``(num_rows,)`` int64 ids of 1..max_groups groups of 1..max_size rows, sparse, shuffled."""
    sizes = draw(st.lists(st.integers(1, max_size), min_size=1, max_size=max_groups))
    labels = draw(
        st.lists(st.integers(0, 10**6), min_size=len(sizes), max_size=len(sizes), unique=True)
    )
    ids = np.repeat(np.asarray(labels, dtype=np.int64), sizes)
    perm = draw(st.permutations(list(range(len(ids)))))
    return ids[np.asarray(perm, dtype=np.int64)]


@st.composite
def grouped_rewards(
    draw: st.DrawFn, max_groups: int = 6, max_size: int = 8
) -> tuple[np.ndarray, np.ndarray]:
    """``(rewards (num_rows,) float64, group_ids (num_rows,) int64)``."""
    ids = draw(ragged_group_ids(max_groups, max_size))
    return draw(rewards(len(ids))), ids


@st.composite
def call_counts(draw: st.DrawFn, max_rollouts: int = 12, max_calls: int = 12) -> np.ndarray:
    """``(n_rollouts,)`` int64 d_k >= 0, 1..max_rollouts rollouts (zeros are common)."""
    d = draw(st.lists(st.integers(0, max_calls), min_size=1, max_size=max_rollouts))
    return np.asarray(d, dtype=np.int64)


@st.composite
def rollout_patterns(
    draw: st.DrawFn, max_rollouts: int = 12, max_calls: int = 12, max_target: int = 9
) -> tuple[np.ndarray, int, int, int]:
    """``(rollout_ids (num_rows,) int64, n_rollouts, target, seed)`` for an alignment call."""
    d = draw(call_counts(max_rollouts, max_calls))
    ids = np.repeat(np.arange(len(d), dtype=np.int64), d)
    if draw(st.booleans()):
        ids = ids[np.asarray(draw(st.permutations(list(range(len(ids))))), dtype=np.int64)]
    return ids, len(d), draw(st.integers(1, max_target)), draw(st.integers(0, 2**16))
