import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import envs


@pytest.mark.parametrize("env_id", envs.ENV_IDS)
def test_every_registered_id_passes_check_env(env_id):
    for preset in ("low", "default", "heavy"):
        env = gym.make(env_id, preset=preset)
        check_env(env.unwrapped, skip_render_check=True)
        vec = gym.make_vec(env_id, num_envs=3, vectorization_mode="vector_entry_point")
        assert vec.metadata["autoreset_mode"] == gym.vector.AutoresetMode.DISABLED
