"""Rules of mgrpo/InvasiveSpecies-v0 (envs/species/env.py) through the Gymnasium API."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs  # noqa: F401  (registers the ids)
from envs.core.spaces import sample_masked
from envs.species.env import InvasiveSpeciesEnv, InvasiveSpeciesVectorEnv, oracle_sub

ENV_ID = "mgrpo/InvasiveSpecies-v0"
PRESETS = ("low", "default", "heavy")


@pytest.mark.parametrize("preset", PRESETS)
def test_check_env(preset):
    check_env(gym.make(ENV_ID, preset=preset).unwrapped, skip_render_check=True)


def test_check_env_flat():
    check_env(gym.make(ENV_ID, flat=True).unwrapped, skip_render_check=True)


def _run_single(seed, query, actions, **kw):
    env = InvasiveSpeciesEnv(**kw)
    obs, _ = env.reset(seed=seed, options={"query": query})
    out = [obs]
    for a in actions:
        obs, r, term, trunc, info = env.step(a)
        out.append((obs, r, term, trunc))
        if term or trunc:
            return out, info
    return out, None


def test_same_seed_same_episode():
    # identical seeds and queries give identical observations, rewards and sub-trajectories
    acts = [np.array([3, 1, 1, 1, 1]), np.array([4, 1, 0, 1, 0]), np.array([0, 0, 0, 0, 0])]
    a, ia = _run_single(5, 2**31 + 3, acts)
    b, ib = _run_single(5, 2**31 + 3, acts)
    for x, y in zip(a[1:], b[1:], strict=True):
        for k in x[0]:
            np.testing.assert_array_equal(x[0][k], y[0][k])
        assert x[1:] == y[1:]
    assert [s.actions.tolist() for s in ia["sub_trajectories"]] == [
        s.actions.tolist() for s in ib["sub_trajectories"]
    ]
    assert ia["sim_time"] == ib["sim_time"]


def _episodes(baseline, n=300, preset="default", start=2**31 + 10_000):
    vec = InvasiveSpeciesVectorEnv(num_envs=n, preset=preset)
    main, subs = vec.baseline_policies(baseline, np.random.default_rng(1))
    vec.set_subagent("sub", subs["sub"])
    obs, _ = vec.reset(seed=list(range(n)), options={"query": start + np.arange(n)})
    while not vec.done.all():
        obs, *_ = vec.step(main(obs))
    return vec.final_infos


def test_vague_instruction_finds_a_distractor_precise_finds_the_answer():
    # same oracle S, same failures; only the dropped field differs
    precise = _episodes("oracle")
    vague = _episodes("oracle_main+vague")
    assert np.mean([i["correct"] for i in precise]) >= 0.97
    assert np.mean([i["distractor_hit"] for i in precise]) == 0.0
    reported_vague = [i for i in vague if i["instructions"] > 0]
    assert np.mean([i["distractor_hit"] for i in reported_vague]) >= 0.97
    assert np.mean([i["correct"] for i in vague]) == 0.0
    assert np.mean([i["constraints_kept"] for i in precise]) == 1.0
    assert np.mean([i["constraints_kept"] for i in vague]) == pytest.approx(2 / 3)


def test_batched_equals_single():
    # N single envs with the same seeds and queries give the same trajectories (random sub)
    n, rng = 6, np.random.default_rng(0)
    queries = 2**31 + np.arange(n) * 7
    vec = InvasiveSpeciesVectorEnv(num_envs=n, preset="heavy")
    singles = [InvasiveSpeciesEnv(preset="heavy") for _ in range(n)]
    vobs, _ = vec.reset(seed=list(range(n)), options={"query": queries})
    sobs = [
        e.reset(seed=i, options={"query": int(q)})[0]
        for i, (e, q) in enumerate(zip(singles, queries, strict=True))
    ]
    s_infos = [None] * n
    for _ in range(vec.max_turns + 1):
        for i in range(n):
            for k in vobs:
                np.testing.assert_array_equal(vobs[k][i], sobs[i][k])
        if vec.done.all():
            break
        acts, _ = sample_masked(vobs["action_mask"], vec.nvec, rng.random((n, len(vec.nvec))))
        vobs, vr, vt, vtr, _ = vec.step(acts)
        for i, e in enumerate(singles):
            if s_infos[i] is None:
                o, r, t, tr, info = e.step(acts[i])
                sobs[i] = o
                assert (r, t, tr) == (vr[i], vt[i], vtr[i])
                if t or tr:
                    s_infos[i] = info
    for i in range(n):
        vi, si = vec.final_infos[i], s_infos[i]
        for key in ("correct", "format_ok", "calls", "sim_time", "constraints_kept"):
            assert vi[key] == si[key], key
        va = [s.actions.tolist() for s in vi["sub_trajectories"]]
        assert va == [s.actions.tolist() for s in si["sub_trajectories"]]
        assert [s.expert for s in vi["sub_trajectories"]] == [
            s.expert for s in si["sub_trajectories"]
        ]


def test_final_info_keys_and_ranges():
    infos = _episodes("oracle_main+random_sub", n=50)
    for info in infos:
        assert 0.0 <= info["correct"] <= 1.0 and info["format_ok"] in (0, 1)
        assert info["calls"]["sub"] == len(info["sub_trajectories"])
        assert 0.0 <= info["constraints_kept"] <= 1.0 and info["distractor_hit"] in (0, 1)
        assert np.isfinite(info["sim_time"]) and info["sim_time"] > 0
        for k, s in enumerate(info["sub_trajectories"]):
            assert s.role == "sub" and s.invocation == k and 0.0 <= s.expert <= 1.0
            assert s.actions.shape == (len(s.logp), 5)


def test_masked_action_sets_format_flag_and_out_of_space_raises():
    env = InvasiveSpeciesEnv()
    env.reset(seed=0, options={"query": 1})
    with pytest.raises(ValueError, match="outside"):
        env.step(np.array([9, 0, 0, 0, 0]))
    # kind 1 = find the person: not a hop of a 2-hop question -> masked -> f_M = 0
    env.step(np.array([1, 1, 1, 1, 0]))
    *_, info = env.step(np.array([0, 0, 0, 0, 0]))
    assert info["format_ok"] == 0


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"presett": "low"}, "presett"),
        ({"preset": "huge"}, "preset"),
        ({"hops": 0}, "hops"),
        ({"n_species": 3}, "n_species"),
        ({"fail_prob": 1.5}, "fail_prob"),
        ({"max_calls": 1}, "max_calls"),
        ({"answer_scoring": "fuzzy"}, "answer_scoring"),
    ],
)
def test_bad_config_names_the_key(kwargs, key):
    with pytest.raises(ValueError, match=key):
        InvasiveSpeciesEnv(**kwargs)


def test_partial_scoring_gives_partial_credit_to_distractor_records():
    # one hop (records only): the other-agency and after-cut-off pages share zip codes with the
    # answer (the same species), the other-species page shares none
    vec = InvasiveSpeciesVectorEnv(num_envs=200, hops=1, answer_scoring="partial")
    main, _ = vec.baseline_policies("oracle_main+vague", np.random.default_rng(0))
    vec.set_subagent("sub", oracle_sub)
    obs, _ = vec.reset(seed=0, options={"query": 2**31 + np.arange(200)})
    while not vec.done.all():
        obs, *_ = vec.step(main(obs))
    c = np.array([i["correct"] for i in vec.final_infos])
    assert (c < 1).all() and (c > 0).mean() > 0.5


def test_subagent_env_passes_check_env_and_scores_its_report():
    sub = InvasiveSpeciesEnv().unwrapped.subagent_env("sub")
    check_env(sub, skip_render_check=True)
    # a precise instruction for the records hop, oracle S: e_S = 1, the answer's page
    env = InvasiveSpeciesEnv(fail_prob=0.0)
    env.reset(seed=0, options={"query": 11})
    kb = env.unwrapped.vec.state.kb
    instr = np.concatenate([[3], kb.values[0, 3], [1, 1, 1]])
    sub = env.unwrapped.subagent_env("sub")
    obs, _ = sub.reset(seed=0, options={"query": 11, "instruction": instr})
    for _ in range(4):
        a, _ = oracle_sub({k: v[None] for k, v in obs.items()})
        obs, r, term, trunc, info = sub.step(a[0])
        if term or trunc:
            break
    assert info["expert"] == 1.0 and info["format_ok"] == 1
    assert info["report"]["doc"][0] == kb.target[0, 3]


def test_docstring_example_runs():
    import doctest

    import envs.species.env as mod

    assert doctest.testmod(mod).failed == 0


def test_flat_turn_cap_follows_the_engine_rule():
    # max_turns x (1 + max_sub_steps): 8 x 5 on default, 18 x 5 on heavy
    assert InvasiveSpeciesVectorEnv(flat=True).max_turns == 40
    assert InvasiveSpeciesVectorEnv(flat=True, preset="heavy").max_turns == 90
    assert InvasiveSpeciesVectorEnv(flat=True, max_sub_steps=3).max_turns == 32


def test_flat_agent_states_its_hop_and_conditions_and_its_report_is_taken_as_is():
    env = InvasiveSpeciesEnv(flat=True, fail_prob=0.0)
    obs, _ = env.reset(seed=0, options={"query": 2**31 + 5})
    t = int(np.argmax(obs["hops"]))
    # no session open: the tool kind (5) is masked, the env opened nothing for the agent
    assert obs["tool_open"][0] == 0 and obs["action_mask"][5] == 0
    # open a session for the first hop, dropping condition 2 (keep = 1, 0, 1)
    obs, *_ = env.step(np.array([1 + t, 1, 0, 1, 0, 0, 0, 0, 0, 0]))
    assert obs["tool_open"][0] == 1 and obs["tool_instruction"][0] == t
    assert obs["tool_instruction"][4:].tolist() == [1, 0, 1]
    for _ in range(3):  # search, visit rank 1, report (the oracle S's moves)
        session = {k[5:]: v[None] for k, v in obs.items() if k.startswith("tool_")}
        session["action_mask"] = obs["action_mask"][None]
        sub = oracle_sub(session)[0][0]
        obs, *_ = env.step(np.concatenate([[5, 0, 0, 0, 0], sub]))
    # the distractor came back and stands: no check, no new session, the agent sees the mismatch
    assert obs["tool_open"][0] == 0 and obs["reported"][t] == 1
    assert obs["match"][t].tolist() == [1.0, 0.0, 1.0]
    *_, info = env.step(np.zeros(10, dtype=np.int64))
    assert info["distractor_hit"] == 1 and info["calls"] == {} and info["turns"] == 5
    # e_S judges the report against every field the agent could state, not only those it
    # stated (dropping a condition cannot raise it): the distractor matches two of three
    assert info["flat_sessions"] == 1 and info["flat_expert"] == pytest.approx(2 / 3)
