import pytest

from envs.rubiks.env import RubiksLogicEnv
from tests.envs.conftest import kinds


@pytest.mark.parametrize("kw", [dict(), dict(reasoner="subagent"), dict(flat=True)])
def test_main_round_trip_for_every_action_kind(kw):
    env = RubiksLogicEnv(**kw)
    seen = set()
    for a in kinds(env.text, env.action_space.nvec):
        assert env.action_space.contains(a)
        out, ok, reason = env.text.parse(env.text.to_text(a))
        assert ok and reason == "" and (out == a).all(), (a, env.text.to_text(a), reason)
        seen.add(env.text.kind(a).name)
    assert {"search_agent", "answer"} <= seen or kw.get("flat")


@pytest.mark.parametrize("role", ["sub", "math"])
def test_subagent_round_trip_and_render(role):
    env = RubiksLogicEnv(reasoner="subagent")
    sub = env.subagent_env(role)
    obs, _ = sub.reset(seed=0, options={"query": 4})
    assert sub.observation_space.contains(obs)
    assert "<|im_start|>user" in sub.text.render(obs)
    for a in kinds(sub.text, sub.action_space.nvec):
        out, ok, _ = sub.text.parse(sub.text.to_text(a))
        assert ok and (out == a).all()


def test_bad_text_is_malformed_and_costs_the_format_flag():
    env = RubiksLogicEnv()
    obs, _ = env.reset(seed=0)
    a, ok, reason = env.text.parse(
        '<tool_call>{"name": "search_agent", "arguments": '
        '{"fact": "colour of the sky"}}</tool_call>'
    )
    assert not ok and "colour of the sky" in reason
    *_, info = env.step(a)
    *_, info = env.step(env.text.parse("<answer>white, green</answer>")[0])
    assert info["format_ok"] == 0


def test_render_shows_clues_facts_and_budget():
    env = RubiksLogicEnv()
    obs, _ = env.reset(seed=0)
    text = env.text.render(obs)
    assert "Clues:" in text and "Turns left: 8" in text and '"name": "search_agent"' in text
