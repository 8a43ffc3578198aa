"""render_mode as Gymnasium has it (and as Stable-Baselines3's make_vec_env uses it)."""

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs


@pytest.mark.parametrize("env_id", envs.ENV_IDS)
def test_make_with_rgb_array_like_sb3_resets_and_steps(env_id):
    # SB3's make_vec_env passes render_mode="rgb_array" to every env (it falls back only on a
    # TypeError): the env must build, reset and step; gym.make only warns about the mode
    with pytest.warns(UserWarning, match="not in the possible render_modes"):
        env = gym.make(env_id, render_mode="rgb_array")
    assert env.render_mode == "rgb_array"
    assert env.metadata["render_modes"] == ["ansi"]
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    a = np.zeros(env.action_space.shape, dtype=np.int64)
    obs, reward, *_ = env.step(a)
    assert env.observation_space.contains(obs)
    base = env.unwrapped
    with pytest.raises(gym.error.UnsupportedMode, match=r"offer.*\['ansi'\]"):
        base.render()


@pytest.mark.parametrize("env_id", envs.ENV_IDS)
def test_ansi_renders_the_text_face_prompt(env_id):
    env = gym.make(env_id, render_mode="ansi")
    obs, _ = env.reset(seed=3)
    text = env.render()
    assert isinstance(text, str)
    assert text == env.unwrapped.text.render(obs)
    assert text.startswith("<|im_start|>system") and text.endswith("<|im_start|>assistant\n")
    sub = env.unwrapped.subagent_env("sub", render_mode="ansi")
    sub_obs, _ = sub.reset(seed=0)
    assert sub.render() == sub.text.render(sub_obs)


@pytest.mark.parametrize("env_id", envs.ENV_IDS)
def test_check_env_with_render_checks(env_id):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no render warning from Gymnasium's checker
        check_env(gym.make(env_id, render_mode="ansi").unwrapped)


def test_no_render_mode_warns_and_returns_none():
    env = gym.make(envs.ENV_IDS[0])
    env.reset(seed=0)
    with pytest.warns(UserWarning, match="without a render mode"):
        assert env.unwrapped.render() is None


def test_vector_env_renders_every_episode():
    vec = gym.make_vec(
        envs.ENV_IDS[1], num_envs=3, vectorization_mode="vector_entry_point", render_mode="ansi"
    )
    base = vec.unwrapped
    with pytest.raises(gym.error.ResetNeeded):
        base.render()
    obs, _ = vec.reset(seed=0)
    frames = base.render()
    assert isinstance(frames, tuple) and len(frames) == 3
    assert list(frames) == base.text.render_batch(obs)


def test_render_mode_changes_no_trajectory():
    rows = []
    for mode in (None, "ansi", "rgb_array"):
        env = envs.RubiksLogicEnv(render_mode=mode)
        obs, _ = env.reset(seed=5)
        rng = np.random.default_rng(0)
        trace = [obs["query_id"].item()]
        done = False
        while not done:
            mask = obs["action_mask"]
            a = np.zeros(env.action_space.shape, dtype=np.int64)
            off = 0
            for c, k in enumerate(env.action_space.nvec):
                a[c] = rng.choice(np.flatnonzero(mask[off : off + k]))
                off += k
            obs, r, term, trunc, info = env.step(a)
            done = term or trunc
            trace.append(r)
        rows.append((trace, info["calls"], info["sim_time"]))
    assert rows[0] == rows[1] == rows[2]


def test_bad_render_mode_type_is_a_value_error():
    with pytest.raises(ValueError, match="render_mode must be a string"):
        envs.InvasiveSpeciesEnv(render_mode=3)
