"""The text faces of both envs: pure, complete (every in-space action has a text) and checked."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envs.core.text import qwen3_prompt
from envs.rubiks.env import RubiksLogicEnv, RubiksLogicVectorEnv
from envs.species import names
from envs.species.env import InvasiveSpeciesEnv, InvasiveSpeciesVectorEnv, oracle_sub
from envs.species.types import SPECIES


def faces():
    """(name, face, nvec) of every role of both envs, hierarchical and flat."""
    out = []
    for name, env in (
        ("rubiks", RubiksLogicEnv()),
        ("rubiks-math", RubiksLogicEnv(reasoner="subagent")),
        ("rubiks-flat", RubiksLogicEnv(flat=True)),
        ("species", InvasiveSpeciesEnv()),
        ("species-heavy-p3", InvasiveSpeciesEnv(preset="heavy", max_parallel=3)),
        ("species-flat", InvasiveSpeciesEnv(flat=True)),
    ):
        out.append((f"{name}/main", env.text, env.action_space.nvec))
        for role in env.subagent_roles:
            task = env.vec.sub_tasks[role]
            out.append((f"{name}/{role}", task.text, task.nvec))
    return out


FACES = faces()
IDS = [f[0] for f in FACES]


# ---------------------------------------------------------------------------- round trip
@pytest.mark.parametrize("name, face, nvec", FACES, ids=IDS)
@settings(max_examples=150, deadline=None)
@given(raw=st.lists(st.integers(0, 10**6), min_size=12, max_size=12))
def test_every_in_space_action_but_the_reserved_one_round_trips(name, face, nvec, raw):
    a = np.array(raw[: len(nvec)]) % nvec
    if face.is_reserved(a):
        with pytest.raises(ValueError, match="reserved malformed"):
            face.to_text(a)
        assert np.array_equal(face.canonical(a), face.malformed())
        return
    out, ok, reason = face.parse(face.to_text(a))
    assert (ok, reason) == (True, "") and np.array_equal(out, face.canonical(a))
    # canonical is idempotent and keeps the action's kind
    assert np.array_equal(face.canonical(out), out) and face.kind(out) is face.kind(a)


@pytest.mark.parametrize("name, face, nvec", FACES, ids=IDS)
def test_only_the_reserved_values_lack_a_text(name, face, nvec):
    # the reserved action type itself is reserved; no other action type is
    for t in range(int(nvec[0])):
        a = np.zeros(len(nvec), np.int64)
        a[0] = t
        assert face.is_reserved(a) == (t == face.invalid_type), t


@pytest.mark.parametrize("name, face, nvec", FACES, ids=IDS)
def test_bad_text_parses_to_the_malformed_action_with_a_reason(name, face, nvec):
    for bad in (
        None,
        "",
        "I would search",
        "<tool_call>{not json}</tool_call>",
        '<tool_call>{"name": "teleport", "arguments": {}}</tool_call>',
        '<tool_call>{"name": "report", "arguments": []}</tool_call>',
        "<tool_call>[1, 2]</tool_call><answer>x</answer>",
    ):
        a, ok, reason = face.parse(bad)
        assert not ok and isinstance(reason, str) and reason
        assert np.array_equal(a, face.malformed()) and face.is_reserved(a)


def test_out_of_space_action_has_no_text():
    text = RubiksLogicEnv().text
    with pytest.raises(ValueError, match="not in MultiDiscrete"):
        text.to_text(np.array([0, 9, 0, 0, 0, 0]))


# ---------------------------------------------------------------------------- purity
def species_obs(env, query, seed=0):
    """Main observations (start, after one hop) and the sub-agent observations of a query."""
    subs = []

    def sub_policy(obs):
        subs.append({k: v[0].copy() for k, v in obs.items()})
        return oracle_sub(obs)

    env.set_subagent("sub", sub_policy)
    obs0, _ = env.reset(seed=seed, options={"query": query})
    first = int(np.argmax(obs0["hops"]))
    obs1, *_ = env.step(np.array([1 + first, 1, 1, 1, 0]))
    return [obs0, obs1], subs


def test_species_prompts_are_pure_functions_of_the_observation():
    # two envs, two queries: either face renders each query's own prompt, also after the env
    # that produced an observation moved on to another query
    env_a, env_b = InvasiveSpeciesEnv(fail_prob=0.0), InvasiveSpeciesEnv(fail_prob=0.0)
    main_a, subs_a = species_obs(env_a, 2**31 + 1)
    main_b, subs_b = species_obs(env_b, 2**31 + 2)
    sub_a, sub_b = env_a.vec.sub_tasks["sub"].text, env_b.vec.sub_tasks["sub"].text
    for obs in (*main_a, *main_b):
        assert env_a.text.render(obs) == env_b.text.render(obs)
    for obs in (*subs_a, *subs_b):
        assert sub_a.render(obs) == sub_b.render(obs)
    assert env_a.text.render(main_a[1]) != env_a.text.render(main_b[1])
    before = env_a.text.render(main_a[1]), sub_a.render(subs_a[0])
    env_a.reset(seed=9, options={"query": 77})
    assert (env_a.text.render(main_a[1]), sub_a.render(subs_a[0])) == before
    # the reported hop's page is named in the main prompt (oracle sub: the answer's page)
    assert "Reports so far:\n- none" in env_a.text.render(main_a[0])
    assert "Reports so far:\n- none" not in env_a.text.render(main_a[1])


def test_species_sub_prompt_states_the_instruction_in_words():
    env = InvasiveSpeciesEnv(hops=(2, 2))
    _, subs = species_obs(env, 2**31 + 3)
    kb = env.vec.instance(2**31 + 3)
    cause = names.CAUSES[int(kb.values[0, SPECIES, 1])]
    prompt = env.vec.sub_tasks["sub"].text.render(subs[0])
    assert cause in prompt and "condition 1" not in prompt
    assert "find the species page" in prompt
    # an instruction that drops the cause does not state it
    obs = dict(subs[0])
    obs["instruction"] = obs["instruction"].copy()
    obs["instruction"][5] = 0  # include_1 = 0
    assert cause not in env.vec.sub_tasks["sub"].text.render(obs)


def test_species_named_report_is_the_reported_page():
    # the main prompt names a report's page only when it and every earlier hop match every
    # field; then it is the hop's answer: check against the env's own state
    vec = InvasiveSpeciesVectorEnv(num_envs=64, preset="heavy")
    main, subs = vec.baseline_policies("oracle_main+vague", np.random.default_rng(0))
    vec.set_subagent("sub", None)
    obs, _ = vec.reset(seed=0, options={"query": 2**31 + np.arange(64)})
    for _ in range(4):
        obs, *_ = vec.step(main(obs))
        match = obs["match"] > 0
        for i in np.flatnonzero(~vec.done):
            chain = True
            for t in np.flatnonzero(obs["hops"][i] > 0):
                if obs["reported"][i, t] == 0:
                    break
                chain &= bool(match[i, t].all())
                if chain:
                    assert vec.state.report[i, t] == vec.state.kb.target[i, t]


def test_rubiks_prompts_are_pure_and_state_what_was_asked():
    env_a, env_b = RubiksLogicEnv(reasoner="subagent"), RubiksLogicEnv(reasoner="subagent")
    seen = {"sub": [], "math": []}
    for env in (env_a, env_b):
        oracle = env.vec.baseline_policies("oracle", None)[1]
        for role in seen:
            env.set_subagent(role, _capture(seen[role], oracle[role]))
    obs_a, _ = env_a.reset(seed=0, options={"query": 5})
    obs_b, _ = env_b.reset(seed=1, options={"query": 6})
    obs_a1, *_ = env_a.step(np.array([0, 1, 1, 0, 0, 0]))  # look up "opposite of green"
    env_b.step(np.array([1, 0, 0, 0, 0, 0]))  # the math agent
    for obs in (obs_a, obs_b, obs_a1):
        assert env_a.text.render(obs) == env_b.text.render(obs)
    for role, rows in seen.items():
        for obs in rows:
            assert env_a.vec.sub_tasks[role].text.render(obs) == env_b.vec.sub_tasks[
                role
            ].text.render(obs)
    search_prompt = env_a.vec.sub_tasks["sub"].text.render(seen["sub"][0])
    assert '"opposite of green"' in search_prompt and "this cube's colour scheme" in search_prompt
    assert "The main agent asks" in env_a.vec.sub_tasks["math"].text.render(seen["math"][0])


def _capture(rows, policy):
    def wrapped(obs):
        rows.append({k: v[0].copy() for k, v in obs.items()})
        return policy(obs)

    return wrapped


@pytest.mark.parametrize(
    "make",
    [
        lambda n: InvasiveSpeciesVectorEnv(num_envs=n),
        lambda n: InvasiveSpeciesVectorEnv(num_envs=n, flat=True),
        lambda n: RubiksLogicVectorEnv(num_envs=n),
        lambda n: RubiksLogicVectorEnv(num_envs=n, flat=True),
    ],
)
def test_render_batch_renders_each_row_like_a_single_env(make):
    vec, single = make(3), make(1)
    obs, _ = vec.reset(seed=0, options={"query": [1, 2**31 + 2, 3]})
    rows = vec.text.render_batch(obs)
    for i, q in enumerate([1, 2**31 + 2, 3]):
        o, _ = single.reset(seed=i, options={"query": q})
        assert rows[i] == single.text.render({k: v[0] for k, v in o.items()})
    assert len(set(rows)) == 3


# ---------------------------------------------------------------------------- messages
@pytest.mark.parametrize("name, face, nvec", FACES[:1] + FACES[-2:], ids=IDS[:1] + IDS[-2:])
def test_messages_are_chat_messages_plus_function_schemas(name, face, nvec):
    env = InvasiveSpeciesEnv(flat=name.startswith("species-flat"))
    if name.startswith("rubiks"):
        env = RubiksLogicEnv()
    obs = env.reset(seed=0)[0]
    if name.endswith("/sub"):
        obs = env.subagent_env("sub").reset(seed=0)[0]
        face = env.vec.sub_tasks["sub"].text
    else:
        face = env.text
    msgs, tools = face.messages(obs)
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert all(isinstance(m["content"], str) and m["content"] for m in msgs)
    assert tools and all(t["type"] == "function" for t in tools)
    for t in tools:
        assert set(t["function"]) == {"name", "description", "parameters"}
        assert t["function"]["parameters"]["type"] == "object"
    json.dumps(tools)  # serializable for a chat template
    # render is the Qwen3 layout of the same messages and tools
    assert face.render(obs) == qwen3_prompt(msgs, tools)


# ---------------------------------------------------------------------------- bad input
def test_unrenderable_observation_errors_name_role_key_and_what_is_allowed():
    species, rubiks = InvasiveSpeciesEnv(), RubiksLogicEnv()
    obs, _ = species.reset(seed=0)
    bad = {k: v for k, v in obs.items() if k != "query_id"}
    with pytest.raises(ValueError, match=r"role 'main'.*'query_id' is missing; allowed"):
        species.text.render(bad)
    with pytest.raises(ValueError, match=r"role 'main'.*key 'candidates' is missing"):
        rubiks.text.render(obs)  # a species observation through the Rubik's face
    vec = InvasiveSpeciesVectorEnv(num_envs=2)
    batch, _ = vec.reset(seed=0)
    shape = r"key 'attempts' has shape \(2, 4\); allowed: shape \(4,\).*render_batch"
    with pytest.raises(ValueError, match=shape):
        species.text.render(batch)
    sub_obs, _ = species.subagent_env("sub").reset(seed=0)
    sub_obs["instruction"] = sub_obs["instruction"] + 99
    with pytest.raises(ValueError, match=r"role 'sub'.*'instruction'.*outside its space"):
        species.vec.sub_tasks["sub"].text.render(sub_obs)
    with pytest.raises(ValueError, match="dict of arrays"):
        species.text.render([1, 2])
