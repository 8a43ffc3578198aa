import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from envs.rubiks.env import RubiksLogicEnv

ENVS = {
    "default": RubiksLogicEnv(),
    "heavy": RubiksLogicEnv(preset="heavy"),
    "flat": RubiksLogicEnv(flat=True),
    "math": RubiksLogicEnv(reasoner="subagent"),
}


def finite(obs):
    return all(np.isfinite(v).all() for v in obs.values())


@settings(max_examples=40, deadline=None)
@given(
    name=st.sampled_from(sorted(ENVS)),
    seed=st.integers(0, 2**31 - 1),
    query=st.integers(0, 2**32),
    raw=st.lists(st.lists(st.integers(0, 10**6), min_size=10, max_size=10), max_size=25),
)
def test_random_in_space_action_sequences_never_crash_or_nan(name, seed, query, raw):
    # any in-space action (masked or not) is legal input; episodes stay finite and in-space
    env = ENVS[name]
    nvec = env.action_space.nvec
    obs, _ = env.reset(seed=seed, options={"query": query})
    for row in raw:
        a = np.array(row[: len(nvec)]) % nvec
        obs, r, term, trunc, info = env.step(a)
        assert env.observation_space.contains(obs) and finite(obs) and np.isfinite(r)
        if term or trunc:
            assert info["format_ok"] in (0, 1) and np.isfinite(info["sim_time"])
            assert 0.0 <= info["correct"] <= 1.0
            for rec in info["sub_trajectories"]:
                assert np.isfinite(rec.logp).all() and 0.0 <= rec.expert <= 1.0
            break
