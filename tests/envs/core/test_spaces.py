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


def _sample_masked_loop(mask, nvec, u):
    """Reference: one component at a time (the (k+1)-th allowed value of each block)."""
    off = block_offsets(nvec)
    a = np.zeros((len(mask), len(nvec)), np.int64)
    for c in range(len(nvec)):
        block = mask[:, off[c] : off[c + 1]].astype(np.int64)
        safe = np.maximum(block.sum(1), 1)
        k = np.minimum((u[:, c] * safe).astype(np.int64), safe - 1)
        a[:, c] = np.argmax(np.cumsum(block, 1) > k[:, None], axis=1)
    return a


@pytest.mark.parametrize("seed", range(4))
def test_masked_sampling_equals_the_per_component_loop(seed):
    # the loop-free sampler picks what the per-component loop picks (empty blocks: 0)
    rng = np.random.default_rng(seed)
    nvec = rng.integers(1, 9, size=rng.integers(1, 9))
    n = int(rng.integers(1, 40))
    mask = (rng.random((n, int(nvec.sum()))) < rng.random()).astype(np.int8)
    u = rng.random((n, len(nvec)))
    a, logp = sample_masked(mask, nvec, u)
    assert np.array_equal(a, _sample_masked_loop(mask, nvec, u)) and logp.dtype == np.float64
    counts = np.add.reduceat(mask.astype(np.int64), block_offsets(nvec)[:-1], axis=1)
    np.testing.assert_allclose(logp, -np.log(np.maximum(counts, 1)).sum(1))
