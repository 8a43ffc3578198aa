"""Text face round trips and hypothesis-driven action sequences (mgrpo/InvasiveSpecies-v0)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envs.species.env import InvasiveSpeciesEnv
from tests.envs.conftest import all_actions


@pytest.mark.parametrize("flat", [False, True])
def test_main_text_round_trip_every_action_kind(flat):
    env = InvasiveSpeciesEnv(flat=flat)
    obs, _ = env.reset(seed=0, options={"query": 3})
    text = env.unwrapped.text
    assert "Find " in text.render(obs)
    kinds = set()
    for a in all_actions(env.action_space.nvec):
        tool = text.kind(a)
        if tool is None:  # the reserved malformed type
            continue
        c = text.canonical(a)
        got, ok, reason = text.parse(text.to_text(c))
        assert ok and reason == "" and np.array_equal(got, c)
        kinds.add(tool.name)
    # flat mode: find_<hop> opens a search session; the session's tools are the agent's own
    expected = {"answer", "find_person", "find_film", "find_species", "find_records"} | (
        {"search", "visit", "report"} if flat else set()
    )
    assert kinds == expected


def test_sub_text_round_trip_and_bad_text():
    env = InvasiveSpeciesEnv()
    sub = env.unwrapped.subagent_env("sub")
    obs, _ = sub.reset(seed=0, options={"query": 5})
    text = sub.text
    assert "The main agent asked you to find the" in text.render(obs)
    for a in all_actions(sub.action_space.nvec):
        if text.kind(a) is None:
            continue
        c = text.canonical(a)
        assert text.parse(text.to_text(c))[1:] == (True, "")
        np.testing.assert_array_equal(text.parse(text.to_text(c))[0], c)
    for bad in ["", "hello", '<tool_call>{"name": "fly"}</tool_call>', None, "<answer>x</answer>"]:
        action, ok, reason = text.parse(bad)
        assert not ok and reason and action[0] == 3  # malformed type: always masked


def test_malformed_text_action_is_masked_and_sets_format_flag():
    env = InvasiveSpeciesEnv()
    env.reset(seed=1, options={"query": 9})
    action, ok, _ = env.unwrapped.text.parse("I think the answer is the lionfish")
    assert not ok
    env.step(action)
    *_, info = env.step(np.zeros(5, dtype=np.int64))
    assert info["format_ok"] == 0


@settings(max_examples=25, deadline=None)
@given(
    preset=st.sampled_from(["low", "default", "heavy"]),
    flat=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
    choices=st.lists(st.integers(0, 2**16), min_size=1, max_size=14),
)
def test_random_in_space_action_sequences_never_crash_or_nan(preset, flat, seed, choices):
    env = InvasiveSpeciesEnv(preset=preset, flat=flat)
    obs, _ = env.reset(seed=seed)
    nvec = env.action_space.nvec
    for c in choices:
        a = np.array([(c >> (3 * k)) % int(n) for k, n in enumerate(nvec)])
        obs, r, term, trunc, info = env.step(a)
        assert env.observation_space.contains(obs)
        assert np.isfinite(r)
        if term or trunc:
            assert np.isfinite(info["correct"]) and np.isfinite(info["sim_time"])
            assert np.isfinite(info["constraints_kept"])
            for s in info["sub_trajectories"]:
                assert np.isfinite(s.expert) and np.isfinite(s.logp).all()
            break
