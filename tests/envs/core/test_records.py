"""The engine's sub-episode store and final info as arrays (envs/core/records.py, finalinfo.py):
the array views and the lazily built per-episode objects hold the same values."""

import numpy as np
import pytest

from tests.envs.conftest import masked_random
from tests.envs.core.conftest import ToyVectorEnv


def _run(n=8, seed=0):
    vec = ToyVectorEnv(n)
    rng = np.random.default_rng(seed)
    obs, _ = vec.reset(seed=seed, options={"query": np.arange(n) + 10})
    while not vec.done.all():
        obs, *_ = vec.step(masked_random(obs["action_mask"], vec.nvec, rng))
    return vec


@pytest.mark.parametrize("seed", [0, 1])
def test_columns_equal_the_per_episode_records(seed):
    vec = _run(seed=seed)
    for role in vec.subagent_roles:
        cols = vec.sub_records.columns(role)
        recs = [(i, r) for i in range(vec.num_envs) for r in vec.final_infos[i]["sub_trajectories"]]
        recs = [(i, r) for i, r in recs if r.role == role]
        assert cols.owner.tolist() == [i for i, _ in recs]
        assert cols.invocation.tolist() == [r.invocation for _, r in recs]
        assert cols.finish_order.tolist() == [r.finish_order for _, r in recs]
        assert cols.expert.tolist() == [r.expert for _, r in recs]
        assert cols.lengths.tolist() == [len(r.actions) for _, r in recs]
        assert np.array_equal(cols.actions, np.concatenate([r.actions for _, r in recs]))
        for k, v in cols.observations.items():
            assert np.array_equal(v, np.concatenate([r.observations[k] for _, r in recs]))
        assert vec.sub_records.steps(role).sum() == len(cols.actions)


def test_final_arrays_equal_the_final_info_dicts():
    vec = _run()
    fin = vec.final_arrays()
    for i, info in enumerate(vec.final_infos):
        for key in ("query", "correct", "format_ok", "sim_time", "turns", "category_errors"):
            assert info[key] == fin[key][i], key
        assert info["calls"] == {r: fin["calls"][r][i] for r in vec.subagent_roles}


def test_reset_forgets_the_records_but_handed_out_views_keep_theirs():
    vec = _run()
    held = vec.final_infos[0]["sub_trajectories"]
    n_held = len(held)
    vec.reset(seed=5)
    assert vec.final_infos[0] is None and len(vec.records[0]) == 0
    assert len(held) == n_held
