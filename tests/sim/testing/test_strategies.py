"""sim.testing.strategies draw what their docstrings promise."""

import numpy as np
from hypothesis import given, settings

from sim.testing.strategies import call_counts, grouped_rewards, rollout_patterns


@settings(max_examples=40, deadline=None)
@given(case=grouped_rewards(max_groups=4, max_size=5))
def test_grouped_rewards_are_ragged_sparse_and_finite(case):
    r, g = case
    assert r.dtype == np.float64 and g.dtype == np.int64 and r.shape == g.shape
    assert np.isfinite(r).all() and (g >= 0).all()
    sizes = np.unique(g, return_counts=True)[1]
    assert 1 <= len(sizes) <= 4 and sizes.max() <= 5


@settings(max_examples=40, deadline=None)
@given(d=call_counts(max_rollouts=5, max_calls=3), case=rollout_patterns(max_target=4))
def test_call_counts_and_rollout_patterns(d, case):
    assert 1 <= len(d) <= 5 and d.min() >= 0 and d.max() <= 3
    ids, n_rollouts, target, seed = case
    assert ids.dtype == np.int64 and 1 <= target <= 4 and seed >= 0
    assert (ids < n_rollouts).all()
