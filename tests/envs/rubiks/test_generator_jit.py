"""The compiled generator draws the reference generator's puzzles, bit for bit."""

import numpy as np
import pytest

from envs.rubiks import solver
from envs.rubiks.config import PRESETS, make_config
from envs.rubiks.env import RubiksLogicVectorEnv
from envs.rubiks.generator import _RECIPES, PuzzleGenerator, _clue_set, puzzle_query, query_rng
from envs.rubiks.generator_jit import (
    CompiledPuzzleGenerator,
    _choice_p,
    _integers,
    _permutation,
    _random,
    _sample,
    numpy_cdf,
)
from envs.rubiks.solver_jit import (
    lowest_bit,
    needed_set,
    read_clues,
    solver_tables,
    unbits,
)
from envs.rubiks.types import OPPOSITE

FIELDS = ("clues", "answer", "world", "possible", "missing", "needed")


def _queries(n: int, start: int = 0) -> list[int]:
    """Query ids i = start .. start + n - 1 in turn as training ids, held-out ids (>= 2**31)
    and ids of two 32-bit seed words (>= 2**32)."""
    kinds = (lambda i: i, lambda i: 2**31 + 7919 * i, lambda i: 2**40 + 104729 * i)
    return [kinds[i % 3](i) for i in range(start, start + n)]


def _assert_same(preset: str, queries: list[int]) -> None:
    fn = PRESETS[preset]["facts_needed"]
    ref, jit = PuzzleGenerator(fn), CompiledPuzzleGenerator(fn)
    for q in queries:
        r_ref, r_jit = query_rng(q), query_rng(q)
        a, b = ref.draw(r_ref), jit.draw(r_jit)
        for f in FIELDS:  # same values, dtypes and shapes
            x, y = np.asarray(getattr(a, f)), np.asarray(getattr(b, f))
            assert x.dtype == y.dtype and np.array_equal(x, y), (preset, q, f)
        assert type(a.answer) is type(b.answer) is int and type(b.world) is int
        # the stream is left where the reference leaves it
        assert r_ref.bit_generator.state == r_jit.bit_generator.state, (preset, q)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_compiled_puzzles_equal_the_reference(preset):
    _assert_same(preset, _queries(300))


@pytest.mark.slow
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_compiled_puzzles_equal_the_reference_on_thousands_of_queries(preset):
    _assert_same(preset, _queries(1700, start=300))  # 2,000 queries with the test above


def test_named_and_cached_puzzles_are_the_same_and_cached_per_backend():
    ref, jit = PuzzleGenerator((0.1, 0.4, 0.5)), CompiledPuzzleGenerator((0.1, 0.4, 0.5))
    for q in (puzzle_query("gaia"), 5, 2**31 + 5):
        a, b = ref(q), jit(q)
        assert a is not b  # the backend is part of the cache key
        assert all(np.array_equal(getattr(a, f), getattr(b, f)) for f in FIELDS)
        assert jit(q) is b
    assert jit(puzzle_query("gaia")).answer == ref(puzzle_query("gaia")).answer


# ---------------------------------------------------------------- numpy's samplers, reproduced
@pytest.mark.parametrize(
    "p", [(0.1, 0.4, 0.5), (0.0, 1.0, 0.0), (0.0, 0.3, 0.7), (0.5, 1, 1, 4, 1, 1)]
)
def test_choice_with_p_is_numpys(p):
    p = np.asarray(p, dtype=np.float64) / np.sum(p)
    a, b = np.random.default_rng(1), np.random.default_rng(1)
    cdf = numpy_cdf(p)
    got = [_choice_p(b, cdf) for _ in range(2000)]
    assert got == [int(a.choice(len(p), p=p)) for _ in range(2000)]
    assert a.bit_generator.state == b.bit_generator.state


@pytest.mark.parametrize("high", [1, 2, 6, 30, 36, 2**31 + 5, 2**32 - 1])
def test_bounded_ints_and_doubles_are_numpys(high):
    """Lemire's rejection (high near 2**32 rejects often) and doubles, interleaved."""
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    for _ in range(1000):
        assert _integers(b, high) == a.integers(0, high)
        assert _random(b) == a.random()
    assert a.bit_generator.state == b.bit_generator.state


@pytest.mark.parametrize("pop,size", [(6, 1), (6, 2), (30, 2), (36, 1), (66, 2), (7, 7)])
def test_sample_without_replacement_is_numpys(pop, size):
    a, b = np.random.default_rng(2), np.random.default_rng(2)
    out = np.empty(size, np.int64)
    for _ in range(500):
        _sample(b, pop, size, out)
        assert out.tolist() == a.choice(pop, size=size, replace=False).tolist()
    assert a.bit_generator.state == b.bit_generator.state


def test_permutation_is_numpys_including_the_buffered_32_bit_draw():
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    out = np.empty(40, np.int64)
    for n in list(range(12)) + [36, 40] * 20:  # odd draw counts leave half a 64-bit word
        _permutation(b, n, out)
        assert out[:n].tolist() == a.permutation(n).tolist()
        assert a.random() == b.random()  # doubles ignore the buffered half
        assert a.integers(0, 13) == b.integers(0, 13)  # 32-bit draws use it
    assert a.bit_generator.state == b.bit_generator.state


# ---------------------------------------------------------------- compiled solver kernels
def test_solver_kernels_equal_the_solver_on_random_clue_sets():
    """read_clues = solver.world_tables and needed_set = solver.minimal_needed on the
    generator's clue sets and on arbitrary ones with up to three OPPOSITE clues (the fixpoint)."""
    t, rng = solver_tables(), np.random.default_rng(4)
    opp = np.flatnonzero(solver.CLUE_POOL[:, 0] == OPPOSITE)
    ok, missing = np.empty(30, bool), np.empty(30, np.int64)
    checked = 0
    for i in range(300):
        if i % 2:
            idx = rng.choice(len(solver.CLUE_POOL), size=rng.integers(1, 9), replace=False)
            idx = np.concatenate([idx, rng.choice(opp, size=rng.integers(1, 4), replace=False)])
        else:
            idx = _clue_set(rng, *_RECIPES[i % len(_RECIPES)])
        ok_ref, _, missing_ref = solver.world_tables(idx)
        read_clues(
            t.pool_ok, t.direct, t.pool_opp, t.opp_img, t.edge_bits, idx, len(idx), ok, missing
        )
        assert (ok == ok_ref).all() and (unbits(missing, 15) == missing_ref).all()
        possible = ok_ref & (missing_ref.sum(axis=1) == 1)
        answer = np.array([lowest_bit(m) for m in missing])
        assert (answer[possible] == missing_ref[possible].argmax(axis=1)).all()
        for w in np.flatnonzero(possible):
            want = solver.minimal_needed(possible, missing_ref, w)
            got = needed_set(t.agree, t.by_size, possible, answer, w)
            assert (unbits(got, 4) == want).all()
            checked += 1
    assert checked > 300


# ---------------------------------------------------------------- the env's switch
def test_env_uses_the_compiled_generator_by_default_and_the_switch_is_validated():
    assert make_config().generator_backend == "numba"
    env = RubiksLogicVectorEnv(2)
    assert isinstance(env.generator, CompiledPuzzleGenerator)
    ref = RubiksLogicVectorEnv(2, generator_backend="python")
    assert type(ref.generator) is PuzzleGenerator
    a, _ = env.reset(seed=0, options={"query": np.array([11, 2**31 + 11])})
    b, _ = ref.reset(seed=0, options={"query": np.array([11, 2**31 + 11])})
    assert all(np.array_equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match=r"generator_backend='jax'.*\['numba', 'python'\]"):
        make_config(generator_backend="jax")
