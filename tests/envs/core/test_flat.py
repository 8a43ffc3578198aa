"""Flat mode of the hierarchical engine (the single agent), on the toy task of conftest.py."""

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from envs.core import HierarchicalEnv
from envs.core.vector import flat_max_turns
from tests.envs.conftest import masked_random
from tests.envs.core.conftest import (
    ANSWER,
    CHECK,
    DELEGATE,
    REPORT,
    S_BAD,
    WAIT,
    ToyEnv,
    ToyVectorEnv,
)


class StatedToyVectorEnv(ToyVectorEnv):
    """The toy task whose single agent states its own tool sessions: WAIT v opens a session
    checking value v (DELEGATE stays "use a tool")."""

    flat_states_sessions = True

    def _act(self, actions, ok):
        res = super()._act(actions, ok)
        if self.flat:
            rows = np.flatnonzero(ok & (actions[:, 0] == WAIT))
            res.delegations["sub"] = (rows, actions[rows, 1:2])
        return res


class StatedToyEnv(HierarchicalEnv):
    vector_class = StatedToyVectorEnv


def test_flat_turn_cap_is_main_turns_times_one_plus_sub_steps():
    # the hierarchical budget in agent turns: 3 main turns x (1 + 3 sub steps) = 12
    assert flat_max_turns(8, 4) == 40
    assert ToyVectorEnv(1, max_turns=3).max_turns == 3
    vec = ToyVectorEnv(1, flat=True, max_turns=3)
    assert (vec.max_turns, vec.main_max_turns) == (12, 3)
    env = ToyEnv(flat=True, max_turns=3)
    env.reset(seed=0, options={"query": 0})
    for turn in range(1, 13):
        *_, term, trunc, info = env.step(np.array([WAIT, 0, CHECK]))
        assert trunc == (turn == 12) and not term
    assert info["turns"] == 12


def test_flat_expert_is_the_mean_e_s_of_finished_sessions():
    # session 1: check, report (e_S 1); session 2: report (e_S 0); session 3 never finishes
    acts = [[DELEGATE, 0, CHECK], [DELEGATE, 0, REPORT], [DELEGATE, 0, REPORT]]
    acts += [[DELEGATE, 0, CHECK], [ANSWER, 0, 0]]
    env = ToyEnv(flat=True)
    env.reset(seed=0, options={"query": 3})
    for a in acts:
        *_, info = env.step(np.array(a))
    assert info["flat_expert"] == 0.5 and info["flat_sessions"] == 2 and info["calls"] == {}
    vec = ToyVectorEnv(2, flat=True)
    vec.reset(seed=0, options={"query": [3, 3]})
    for a in acts:
        *_, vinfo = vec.step(np.array([a, a]))
    assert vinfo["flat_expert"].tolist() == [0.5, 0.5] and vinfo["_flat_expert"].all()
    assert vinfo["flat_sessions"].tolist() == [2, 2]
    assert vec.final_infos[1]["flat_expert"] == 0.5
    # hierarchical episodes have no such key
    env = ToyEnv()
    env.reset(seed=0, options={"query": 3})
    *_, info = env.step(np.array([ANSWER, 0]))
    assert "flat_expert" not in info


def test_flat_tool_components_count_only_in_a_tool_call():
    # S_BAD is masked in the tool block: it makes a tool call malformed, not an answer
    env = ToyEnv(flat=True)
    env.reset(seed=0, options={"query": 4})  # secret 1
    *_, info = env.step(np.array([ANSWER, 1, S_BAD]))
    assert info["format_ok"] == 1 and info["correct"] == 1.0
    env.reset(seed=0, options={"query": 4})
    env.step(np.array([DELEGATE, 0, S_BAD]))
    *_, info = env.step(np.array([ANSWER, 1, 0]))
    assert info["format_ok"] == 0


def test_stated_sessions_open_with_the_agents_instruction():
    env = StatedToyEnv(flat=True)
    obs, _ = env.reset(seed=0, options={"query": 3})  # secret 0
    # no session yet: tool calls are masked
    assert obs["tool_open"].tolist() == [0.0] and obs["action_mask"][DELEGATE] == 0
    obs, *_ = env.step(np.array([WAIT, 2, 0]))  # open a session checking 2
    assert obs["tool_open"].tolist() == [1.0] and obs["action_mask"][DELEGATE] == 1
    assert obs["tool_instruction"].tolist() == [2]
    obs, *_ = env.step(np.array([DELEGATE, 0, CHECK]))
    obs, *_ = env.step(np.array([WAIT, 0, 0]))  # restate: the open session closes unreported
    assert obs["tool_instruction"].tolist() == [0] and obs["known"].tolist() == [0, 0, 0]
    obs, *_ = env.step(np.array([DELEGATE, 0, CHECK]))
    obs, *_ = env.step(np.array([DELEGATE, 0, REPORT]))  # reported: taken as it is
    assert obs["tool_open"].tolist() == [0.0] and obs["known"].tolist() == [1, 0, 0]
    *_, info = env.step(np.array([ANSWER, 0, 0]))
    assert info["flat_sessions"] == 2 and info["flat_expert"] == 1.0 and info["correct"] == 1


def test_stated_tool_call_without_a_session_is_malformed():
    env = StatedToyEnv(flat=True)
    env.reset(seed=0, options={"query": 3})
    env.step(np.array([DELEGATE, 0, CHECK]))
    *_, info = env.step(np.array([ANSWER, 0, 0]))
    assert info["format_ok"] == 0 and info["flat_sessions"] == 0 and info["flat_expert"] == 0.0


@pytest.mark.parametrize("policy_seed", [0, 1])
def test_stated_sessions_check_env_and_batched_equals_single(policy_seed):
    check_env(StatedToyEnv(flat=True), skip_render_check=True)
    n, rng = 5, np.random.default_rng(policy_seed)
    vec = StatedToyVectorEnv(n, flat=True)
    singles = [StatedToyEnv(flat=True) for _ in range(n)]
    obs_v, _ = vec.reset(seed=list(range(n)), options={"query": np.arange(n)})
    obs_s = [e.reset(seed=i, options={"query": i})[0] for i, e in enumerate(singles)]
    infos = [None] * n
    while not vec.done.all():
        for i in range(n):
            assert all(np.array_equal(obs_v[k][i], obs_s[i][k]) for k in obs_s[i])
        a = masked_random(obs_v["action_mask"], vec.nvec, rng)
        obs_v, *_ = vec.step(a)
        for i, e in enumerate(singles):
            if infos[i] is None:
                obs_s[i], _, t, tr, info = e.step(a[i])
                infos[i] = info if t or tr else None
    for i in range(n):
        for key in ("correct", "format_ok", "sim_time", "flat_expert", "flat_sessions"):
            assert vec.final_infos[i][key] == infos[i][key], key
