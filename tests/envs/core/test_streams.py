"""Counter-based episode streams (envs/core/streams.py)."""

import numpy as np
import pytest

from envs.core import streams
from tests.envs.core.conftest import ToyEnv, ToyVectorEnv


def test_a_draw_does_not_depend_on_the_batch():
    # episode i's draws are the same computed for all keys at once or for its key alone
    keys = streams.seed_keys(range(5))
    idx = streams.grid(np.arange(5) * 7, (3, 4))
    batch = streams.uniforms(keys[:, None, None], streams.SUB_U, idx)
    for i in range(5):
        one = streams.uniforms(keys[i : i + 1, None, None], streams.SUB_U, idx[i : i + 1])
        assert np.array_equal(batch[i], one[0])


def test_streams_and_seeds_are_distinct_and_uniforms_look_uniform():
    keys = streams.seed_keys([0, 1])
    c = np.arange(20_000)
    u0, u1 = (streams.uniforms(k, streams.MAIN_U, c) for k in keys)
    assert not np.array_equal(u0, u1)
    assert not np.array_equal(u0, streams.uniforms(keys[0], streams.SUB_U, c))
    assert ((u0 >= 0) & (u0 < 1)).all() and abs(u0.mean() - 0.5) < 0.01
    z = streams.normals(keys[0], streams.SUB_Z, c)
    assert abs(z.mean()) < 0.03 and abs(z.std() - 1) < 0.03


def test_bad_seeds_raise():
    with pytest.raises(ValueError, match="seeds"):
        streams.seed_keys([-1])


def test_unseeded_reset_continues_the_slot_like_the_single_env():
    # seed, then reset without a seed: vector slot i and a single env seeded alike agree
    vec = ToyVectorEnv(2)
    vec.reset(seed=[4, 9])
    vec.reset()
    single = ToyEnv()
    single.reset(seed=9)
    single.reset()
    assert vec._keys[1] == single.vec._keys[0]
    assert vec.queries[1] == single.vec.queries[0]
