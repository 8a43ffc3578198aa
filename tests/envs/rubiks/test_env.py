import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs  # noqa: F401 - registers the ids
from envs.rubiks import solver
from envs.rubiks.env import ANSWER, DELEGATE, REASON, RubiksLogicEnv, RubiksLogicVectorEnv
from envs.rubiks.types import MAX_CLUES, N_CLUE_TYPES, SOLVE, fact_values
from tests.envs.conftest import masked_random

ID = "mgrpo/RubiksLogic-v0"


def random_actions(env, obs, rng):
    return masked_random(obs["action_mask"], env.action_space.nvec, rng)


def run(env, seed, query, policy_seed=0):
    rng = np.random.default_rng(policy_seed)
    obs, _ = env.reset(seed=seed, options={"query": query})
    trace = [obs]
    while True:
        obs, r, term, trunc, info = env.step(random_actions(env, obs, rng))
        trace.append(obs)
        if term or trunc:
            return trace, info


@pytest.mark.parametrize("kw", [dict(flat=True), dict(reasoner="subagent"), dict(max_parallel=1)])
def test_check_env_for_variants(kw):
    check_env(gym.make(ID, **kw).unwrapped, skip_render_check=True)


def test_same_seed_same_episode():
    env = RubiksLogicEnv()
    t1, i1 = run(env, 5, 77)
    t2, i2 = run(env, 5, 77)
    assert len(t1) == len(t2)
    for a, b in zip(t1, t2, strict=True):
        assert all((a[k] == b[k]).all() for k in a)
    assert i1["sim_time"] == i2["sim_time"] and i1["calls"] == i2["calls"]


def test_delegating_the_logic_to_search_is_a_category_error_that_never_answers():
    env = RubiksLogicEnv(preset="heavy")
    obs, _ = env.reset(seed=0, options={"query": 11})
    for _ in range(3):
        obs, *_ = env.step(np.array([DELEGATE, SOLVE, 1, SOLVE + 1, 1, 0]))
    # search cannot do logic: no facts, no candidates; every call counted as an error
    assert (fact_values(obs["facts"]) < 0).all() and obs["candidates"].sum() == 0
    obs, r, term, trunc, info = env.step(np.array([REASON, 0, 0, 0, 0, 0]))
    if env.vec.n_needed[0] > 0:  # the reasoner alone cannot pin it (facts needed)
        assert obs["candidates"].sum() > 1
    assert env.vec.category_errors[0] == 6


def decode_clues(onehot):
    rows = onehot.reshape(MAX_CLUES, -1)
    keep = rows[:, :N_CLUE_TYPES].any(axis=1)
    r = rows[keep]
    typ = r[:, :N_CLUE_TYPES].argmax(1)
    c = r[:, N_CLUE_TYPES : N_CLUE_TYPES + 6].argmax(1)
    d = r[:, N_CLUE_TYPES + 6 :].argmax(1)
    return np.stack([typ, c, d], axis=1)


@pytest.mark.parametrize("seed", range(6))
def test_reasoner_only_uses_facts_in_the_main_observation(seed):
    env = RubiksLogicEnv()
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    for _ in range(env.vec.max_turns):
        before = obs
        a = random_actions(env, obs, rng)
        if a[0] == ANSWER:
            a[0] = REASON
        obs, _, term, trunc, _ = env.step(a)
        if a[0] == REASON and before["action_mask"][REASON]:
            expect = solver.solve(decode_clues(before["clues"]), fact_values(before["facts"]))
            assert np.flatnonzero(obs["candidates"]).tolist() == expect.tolist()
        if term or trunc:
            break


def test_calls_come_from_the_main_agents_choices():
    env = RubiksLogicVectorEnv(num_envs=400, facts_needed=(1.0, 0, 0))
    oracle = env.oracle_main()
    obs, _ = env.reset(seed=0, options={"query": np.arange(400)})
    while not env.done.all():
        obs, *_ = env.step(oracle(obs))
    # an oracle that needs no facts calls no one
    assert env.calls.sum() == 0 and env.correct.mean() == 1.0
    obs, _ = env.reset(seed=0, options={"query": np.arange(400)})
    a = np.zeros((400, 6), np.int64)
    a[:, 3] = 2  # delegate two look-ups at once
    env.step(a)
    assert (env.calls[:, 0] == 2).all()


def test_masked_action_sets_format_flag_and_out_of_space_raises():
    env = RubiksLogicEnv(max_calls=0)
    obs, _ = env.reset(seed=1)
    assert obs["action_mask"][DELEGATE] == 0
    obs, r, term, trunc, _ = env.step(np.array([DELEGATE, 0, 0, 0, 0, 0]))
    obs, r, term, trunc, info = env.step(np.array([ANSWER, 0, 0, 0, 0, 0]))
    assert term and info["format_ok"] == 0 and r == 0.0
    with pytest.raises(ValueError, match="outside"):
        env.step(np.array([9, 0, 0, 0, 0, 0]))


@pytest.mark.parametrize(
    "kw, key",
    [
        (dict(colour="red"), "colour"),
        (dict(fail_prob=-0.1), "fail_prob"),
        (dict(search_noise=1.0), "search_noise"),
        (dict(preset="extreme"), "preset"),
        (dict(facts_needed=(1, 1, 0)), "facts_needed"),
        (dict(facts_needed=(0.1, 0.3, 0.4, 0.2)), "facts_needed"),
        (dict(max_parallel=3), "max_parallel"),
        (dict(reasoner="web"), "reasoner"),
    ],
)
def test_bad_config_fails_at_construction_naming_the_key(kw, key):
    with pytest.raises(ValueError, match=key):
        gym.make(ID, **kw)


def test_sub_trajectories_records_and_custom_policy_logp():
    env = RubiksLogicEnv(reasoner="subagent")
    assert env.subagent_roles == ("sub", "math")
    calls = []

    def pol(obs):
        calls.append(len(obs["action_mask"]))
        n = len(obs["action_mask"])
        return np.full((n, 4), 0) + np.array([2, 0, 0, 0]), np.full(n, -1.5)

    env.set_subagent("sub", pol)
    env.reset(seed=0, options={"query": 5})
    env.step(np.array([DELEGATE, 0, 1, 2, 1, 0]))
    env.step(np.array([REASON, 0, 0, 0, 0, 0]))
    *_, info = env.step(np.array([ANSWER, 0, 0, 0, 0, 3]))
    recs = info["sub_trajectories"]
    assert calls == [2] and info["calls"] == {"sub": 2, "math": 1}
    assert [(r.role, r.invocation) for r in recs] == [("sub", 0), ("sub", 1), ("math", 0)]
    assert sorted(r.finish_order for r in recs) == [0, 1, 2]
    sub = recs[0]
    assert sub.actions.shape == (1, 4) and sub.logp.tolist() == [-1.5]
    assert sub.format_ok == 1 and sub.expert == 0.0  # reported without reading anything
    assert all(v.shape[0] == 1 for v in sub.observations.values())
    assert info["sim_time"] > 0 and np.isfinite(info["sim_time"])


def test_flat_mode_has_no_roles_and_the_agent_searches_itself():
    env = RubiksLogicEnv(flat=True)
    assert env.subagent_roles == () and env.action_space.nvec.tolist()[-4:] == [4, 5, 2, 3]
    obs, _ = env.reset(seed=0, options={"query": 3})
    a = np.zeros(10, np.int64)
    a[6:] = [0, 0, 1, 0]  # search "opposite of white" with the keyword
    obs, *_ = env.step(a)
    assert obs["tool_results"].any() and env.vec.calls.shape[1] == 1


@pytest.mark.parametrize("kw", [dict(), dict(reasoner="subagent"), dict(flat=True)])
def test_batched_equals_single(kw):
    n, queries, seeds = 5, np.arange(100, 105), [10, 11, 12, 13, 14]
    vec = RubiksLogicVectorEnv(num_envs=n, **kw)
    singles = [RubiksLogicEnv(**kw) for _ in range(n)]
    rng = np.random.default_rng(0)
    obs_v, _ = vec.reset(seed=seeds, options={"query": queries})
    obs_s = [
        e.reset(seed=s, options={"query": int(q)})[0]
        for e, s, q in zip(singles, seeds, queries, strict=True)
    ]
    infos_s = [None] * n
    for _ in range(vec.max_turns):
        a = masked_random(obs_v["action_mask"], vec.nvec, rng)
        obs_v, r_v, term_v, trunc_v, _ = vec.step(a)
        for i, e in enumerate(singles):
            if infos_s[i] is None:
                o, r, term, trunc, info = e.step(a[i])
                obs_s[i] = o
                if term or trunc:
                    infos_s[i] = info
            assert all((obs_v[k][i] == obs_s[i][k]).all() for k in obs_s[i])
    for i in range(n):
        fv, fs = vec.final_infos[i], infos_s[i]
        assert fv["sim_time"] == fs["sim_time"] and fv["calls"] == fs["calls"]
        assert fv["correct"] == fs["correct"] and fv["format_ok"] == fs["format_ok"]
        for rv, rs in zip(fv["sub_trajectories"], fs["sub_trajectories"], strict=True):
            assert (rv.actions == rs.actions).all() and rv.expert == rs.expert
