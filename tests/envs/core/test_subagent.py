"""Rules of sub-agent tasks and SubAgentEnv (envs/core/subagent.py), on the toy task."""

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from envs.core.subagent import SubAgentEnv
from tests.envs.core.conftest import CHECK, REPORT, S_BAD, ToyEnv, ToyVectorEnv


def sub_env() -> SubAgentEnv:
    return ToyVectorEnv(1).subagent_env("sub")


def test_check_env():
    check_env(sub_env(), skip_render_check=True)


def test_observation_carries_query_id_and_instruction():
    env = sub_env()
    obs, _ = env.reset(seed=0, options={"query": 2**31 + 5, "instruction": [2]})
    assert int(obs["query_id"]) == 2**31 + 5 and obs["instruction"].tolist() == [2]
    assert env.observation_space.contains(obs)
    assert {"query_id", "instruction", "action_mask"} <= set(env.observation_space.spaces)


def test_report_after_check_scores_expert_and_format():
    env = sub_env()
    env.reset(seed=0, options={"query": 3, "instruction": [0]})
    env.step(np.array([CHECK]))
    obs, r, term, trunc, info = env.step(np.array([REPORT]))
    # checked and reported: f_S = 1, e_S = 1, reward f_S * e_S
    assert term and not trunc and info["format_ok"] == 1 and info["expert"] == 1.0 and r == 1.0
    assert info["report"]["hit"].tolist() == [True]  # secret 3 % 3 == 0 was instructed


def test_masked_action_sets_f_zero():
    env = sub_env()
    env.reset(seed=0, options={"query": 3, "instruction": [0]})
    env.step(np.array([S_BAD]))  # in-space, always masked
    *_, info = env.step(np.array([REPORT]))
    assert info["format_ok"] == 0 and info["expert"] == 0.0


def test_step_cap_truncates_without_report():
    env = sub_env()
    env.reset(seed=0, options={"query": 1, "instruction": [1]})
    for _ in range(3):
        obs, r, term, trunc, info = env.step(np.array([CHECK]))
    assert trunc and not term and info["format_ok"] == 0 and r == 0.0


def test_done_sub_episode_steps_are_no_ops_and_out_of_space_raises():
    env = sub_env()
    env.reset(seed=0, options={"query": 1, "instruction": [1]})
    obs1, *_ = env.step(np.array([REPORT]))
    obs2, r, term, trunc, info = env.step(np.array([CHECK]))
    assert r == 0.0 and term and not trunc and info == {}
    assert all(np.array_equal(obs1[k], obs2[k]) for k in obs1)
    with pytest.raises(ValueError, match="outside"):
        env.step(np.array([3]))


def test_bad_instruction_names_the_role():
    with pytest.raises(ValueError, match="role 'sub'"):
        sub_env().reset(seed=0, options={"instruction": [1, 2]})


def test_sample_instruction_default_and_same_seed_same_episode():
    a = sub_env().reset(seed=4, options={"query": 8})[0]
    b = sub_env().reset(seed=4, options={"query": 8})[0]
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_engine_sub_observations_match_the_standalone_env():
    # the same task observed through the engine (a delegation) and through SubAgentEnv
    seen = []

    def policy(obs):
        seen.append({k: v[0].copy() for k, v in obs.items()})
        return np.array([[REPORT]]), np.zeros(1)

    env = ToyEnv()
    env.set_subagent("sub", policy)
    env.reset(seed=0, options={"query": 5})
    env.step(np.array([0, 2]))
    alone, _ = sub_env().reset(seed=0, options={"query": 5, "instruction": [2]})
    assert set(seen[0]) == set(alone)
    assert all(np.array_equal(seen[0][k], alone[k]) for k in alone)
