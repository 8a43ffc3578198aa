"""Rules of the hierarchical engine (envs/core/vector.py), on the toy task of conftest.py."""

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from envs.core.spaces import ID_FIELDS
from tests.envs.conftest import masked_random
from tests.envs.core.conftest import ANSWER, DELEGATE, M_BAD, WAIT, ToyEnv, ToyVectorEnv


def test_check_env_hierarchical_and_flat():
    check_env(ToyEnv(), skip_render_check=True)
    check_env(ToyEnv(flat=True), skip_render_check=True)


@pytest.mark.parametrize("flat", [False, True])
@pytest.mark.parametrize("policy_seed", [0, 1])
def test_batched_equals_single(flat, policy_seed):
    # N single envs reset with the same seeds and queries see the same observations, rewards
    # and sub-trajectories as one batched env (random sub policy from the episodes' streams)
    n, seeds, queries = 6, [3, 4, 5, 6, 7, 8], np.arange(10, 16)
    vec = ToyVectorEnv(n, flat=flat)
    singles = [ToyEnv(flat=flat) for _ in range(n)]
    rng = np.random.default_rng(policy_seed)
    obs_v, _ = vec.reset(seed=seeds, options={"query": queries})
    obs_s = [
        e.reset(seed=s, options={"query": int(q)})[0]
        for e, s, q in zip(singles, seeds, queries, strict=True)
    ]
    infos = [None] * n
    while not vec.done.all():
        for i in range(n):
            assert all(np.array_equal(obs_v[k][i], obs_s[i][k]) for k in obs_s[i])
        a = masked_random(obs_v["action_mask"], vec.nvec, rng)
        obs_v, r_v, t_v, tr_v, _ = vec.step(a)
        for i, e in enumerate(singles):
            if infos[i] is None:
                obs_s[i], r, t, tr, info = e.step(a[i])
                assert (r, t, tr) == (r_v[i], t_v[i], tr_v[i])
                if t or tr:
                    infos[i] = info
    for i in range(n):
        fv, fs = vec.final_infos[i], infos[i]
        for key in ("correct", "format_ok", "calls", "sim_time", "turns", "query"):
            assert fv[key] == fs[key], key
        for rv, rs in zip(fv["sub_trajectories"], fs["sub_trajectories"], strict=True):
            assert np.array_equal(rv.actions, rs.actions) and rv.expert == rs.expert


def test_observation_carries_the_query_id():
    vec = ToyVectorEnv(3)
    obs, _ = vec.reset(seed=0, options={"query": [5, 2**31 + 1, 7]})
    assert obs["query_id"].dtype == np.int64 and obs["query_id"].tolist() == [5, 2**31 + 1, 7]
    assert vec.observation_space.contains(obs)
    single, _ = ToyEnv().reset(seed=0, options={"query": 9})
    assert single["query_id"].shape == () and int(single["query_id"]) == 9


def test_flat_mode_adds_the_tool_session_fields_with_prefix():
    obs, _ = ToyVectorEnv(2, flat=True).reset(seed=0, options={"query": [4, 5]})
    assert {"tool_checked", "tool_query_id", "tool_instruction"} <= set(obs)
    assert obs["tool_query_id"].tolist() == [4, 5]
    assert set(ID_FIELDS) == {"query_id", "instruction"}


def test_query_drawn_from_the_seed_is_a_training_id():
    # without options["query"] the query comes from the episode's generator, below 2**31
    vec = ToyVectorEnv(4)
    a, _ = vec.reset(seed=11)
    b, _ = vec.reset(seed=11)
    assert (a["query_id"] == b["query_id"]).all() and (a["query_id"] < 2**31).all()


def test_int_seed_gives_episode_i_seed_plus_i():
    vec = ToyVectorEnv(2)
    vec.reset(seed=20, options={"query": [1, 1]})
    single = ToyEnv()
    single.reset(seed=21, options={"query": 1})
    # the same episode key: every draw agrees
    assert vec._keys[1] == single.vec._keys[0]


def test_done_episode_steps_are_no_ops_autoreset_disabled():
    vec = ToyVectorEnv(2)
    vec.reset(seed=0, options={"query": [0, 1]})
    a = np.array([[ANSWER, 0], [WAIT, 0]])
    obs1, *_ = vec.step(a)
    t0, turn0 = vec.sim_time[0], vec.turn[0]
    obs2, r2, term2, trunc2, info = vec.step(np.array([[ANSWER, 1], [ANSWER, 1]]))
    # episode 0 ended at step 1: no-op, reward 0, terminated stays, observation unchanged
    assert term2[0] and not trunc2[0] and r2[0] == 0.0
    assert vec.sim_time[0] == t0 and vec.turn[0] == turn0
    assert all(np.array_equal(obs1[k][0], obs2[k][0]) for k in obs1)
    # the vector info marks only the episode that ended at this step
    assert info["_correct"][1] and not info["_correct"][0]
    # a done episode's action is still checked against the space, not the mask
    vec.step(np.array([[M_BAD, 0], [M_BAD, 0]]))
    with pytest.raises(ValueError, match="outside"):
        vec.step(np.array([[4, 0], [0, 0]]))


def test_out_of_space_action_raises_and_names_the_component():
    vec = ToyVectorEnv(1)
    vec.reset(seed=0)
    with pytest.raises(ValueError, match="component 1 = 3"):
        vec.step(np.array([[ANSWER, 3]]))
    with pytest.raises(ValueError, match="shape"):
        vec.step(np.zeros((1, 5), np.int64))


def test_step_before_reset_raises():
    with pytest.raises(RuntimeError, match="reset"):
        ToyVectorEnv(1).step(np.array([[WAIT, 0]]))


def test_masked_action_sets_f_zero_and_uses_the_turn():
    env = ToyEnv()
    env.reset(seed=0, options={"query": 4})  # secret 1
    obs, r, term, trunc, info = env.step(np.array([M_BAD, 0]))
    assert not term and env.vec.turn[0] == 1 and env.vec.format_ok[0] == 0
    *_, info = env.step(np.array([ANSWER, 1]))
    # the answer is right, but f_M = 0: reward 0
    assert info["correct"] == 1.0 and info["format_ok"] == 0


def test_turn_cap_truncates():
    env = ToyEnv(max_turns=2)
    env.reset(seed=0, options={"query": 0})
    env.step(np.array([WAIT, 0]))
    *_, term, trunc, info = env.step(np.array([WAIT, 0]))
    assert trunc and not term and info["turns"] == 2 and info["correct"] == 0.0


def test_delegation_runs_a_sub_episode_with_the_policy_and_records_it():
    env = ToyEnv()
    seen = []

    def policy(obs):
        seen.append({k: v.copy() for k, v in obs.items()})
        n = len(obs["action_mask"])
        a = np.where(obs["checked"][:, :1] > 0, 1, 0)  # check, then report
        return a, np.full(n, -0.5)

    env.set_subagent("sub", policy)
    env.reset(seed=0, options={"query": 7})  # secret 1
    obs, *_ = env.step(np.array([DELEGATE, 1]))
    assert obs["known"].tolist() == [0, 1, 0]  # the report came back in the next observation
    *_, info = env.step(np.array([ANSWER, 1]))
    (rec,) = info["sub_trajectories"]
    assert info["calls"] == {"sub": 1} and rec.role == "sub" and rec.invocation == 0
    assert rec.actions.tolist() == [[0], [1]] and rec.logp.tolist() == [-0.5, -0.5]
    assert rec.format_ok == 1 and rec.expert == 1.0 and rec.instruction.tolist() == [1]
    # the sub-agent's observation carries its owner's query id and its instruction
    assert seen[0]["query_id"].tolist() == [7] and seen[0]["instruction"].tolist() == [[1]]
    assert rec.observations["query_id"].tolist() == [7, 7]


def test_bad_policy_output_and_unknown_role_raise():
    env = ToyEnv()
    with pytest.raises(ValueError, match="unknown sub-agent role"):
        env.set_subagent("math", None)
    with pytest.raises(ValueError, match="callable"):
        env.set_subagent("sub", 3)
    env.set_subagent("sub", lambda obs: (np.full((len(obs["checked"]), 1), 7), np.zeros(1)))
    env.reset(seed=0, options={"query": 1})
    with pytest.raises(ValueError, match="'sub' policy action"):
        env.step(np.array([DELEGATE, 0]))
