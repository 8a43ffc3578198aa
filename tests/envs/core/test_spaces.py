import numpy as np
import pytest

from envs.core.spaces import actions_allowed, block_offsets, sample_masked, validate_actions

NVEC = np.array([3, 2, 4])


def test_offsets_are_block_starts():
    # blocks [0,3), [3,5), [5,9)
    assert block_offsets(NVEC).tolist() == [0, 3, 5, 9]


def test_out_of_space_action_raises_and_names_the_component():
    with pytest.raises(ValueError, match="component 2 = 4"):
        validate_actions(np.array([[0, 0, 4]]), NVEC, 1)
    with pytest.raises(ValueError, match="shape"):
        validate_actions(np.zeros((2, 2), int), NVEC, 2)
    with pytest.raises(ValueError, match="integers"):
        validate_actions(np.array([[0.5, 0, 0]]), NVEC, 1)


def test_masked_sampling_only_picks_allowed_values_and_logp_is_uniform():
    rng = np.random.default_rng(0)
    mask = np.array([[0, 1, 1, 1, 0, 0, 0, 1, 0]] * 500, dtype=np.int8)
    a, logp = sample_masked(mask, NVEC, rng.random((500, 3)))
    assert actions_allowed(a, mask, block_offsets(NVEC)).all()
    assert set(a[:, 0]) == {1, 2} and set(a[:, 1]) == {0} and set(a[:, 2]) == {2}
    # two choices for component 0, one each for the others: log(1/2)
    np.testing.assert_allclose(logp, np.log(0.5))
