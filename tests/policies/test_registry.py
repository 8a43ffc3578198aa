"""Rules of policies/registry.py: kinds by name, clear errors for unknown ones."""

import gymnasium as gym
import numpy as np
import pytest

from policies import RoleSpec, build_policies, policy_kinds, register_policy_kind
from policies.registry import Built


class _Cfg:
    hidden = 8
    shared = False


def _specs():
    obs = gym.spaces.Dict(
        {"x": gym.spaces.Box(0, 1, (3,)), "action_mask": gym.spaces.MultiBinary(5)}
    )
    return {"main": RoleSpec(obs, gym.spaces.MultiDiscrete([2, 3]))}


def test_mlp_is_registered_and_builds_every_role():
    assert "mlp" in policy_kinds()
    built = build_policies("mlp", _specs(), _Cfg(), seed=0)
    assert list(built.policies) == ["main"] and built.shared_module is None
    a, lp = built.policies["main"].act({"x": np.zeros((4, 3)), "action_mask": np.ones((4, 5))})
    assert a.shape == (4, 2) and lp.shape == (4,)


def test_unknown_kind_names_the_key_and_lists_the_kinds():
    with pytest.raises(
        ValueError, match=r"policy.kind = 'gpt' is not a policy kind; allowed: .*mlp"
    ):
        build_policies("gpt", _specs(), _Cfg(), seed=0)


def test_a_registered_kind_is_built_by_name_and_names_are_unique():
    @register_policy_kind("test-constant")
    def _build(specs, config, seed):
        return Built({r: ("constant", seed) for r in specs})

    assert build_policies("test-constant", _specs(), _Cfg(), 5).policies == {
        "main": ("constant", 5)
    }
    with pytest.raises(ValueError, match="already registered"):
        register_policy_kind("test-constant")(_build)
