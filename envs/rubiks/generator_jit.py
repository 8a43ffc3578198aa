"""Compiled (numba) puzzle generator: the puzzles of :mod:`envs.rubiks.generator`, bit for bit.

:class:`CompiledPuzzleGenerator` runs the reference recipe (``PuzzleGenerator.draw``: k, then
``_attempt`` until a puzzle needs k facts) in one compiled loop that draws from the query's own
``numpy.random.Generator``: numba calls the bit generator's own C functions (``next_uint32``,
``next_double``, on its state), so the raw stream and the generator's state afterwards are numpy's.
Each numpy sampler the recipe uses is reproduced with numpy's algorithm on those draws:

| reference call | numpy's algorithm | here |
|---|---|---|
| ``choice(n, p=p)`` | ``searchsorted(cdf, random(), "right")`` | :func:`_choice_p` |
| ``permutation(n)`` | Fisher-Yates, j in [0, i] by masked rejection | :func:`_permutation` |
| ``choice(a)`` | ``integers(0, len(a))``: Lemire's bounded 32-bit ints | :func:`_integers` |
| ``choice(a, m, replace=False)`` | Floyd's algorithm, then a Lemire shuffle | :func:`_sample` |
| ``random()`` | the bit generator's ``next_double`` | :func:`_random` |

(numba's own ``Generator.integers``, ``permutation`` and ``random`` give numpy's streams too, but
its ``permutation`` is about 5x slower here and the methods triple the compile time.)
``tests/envs/rubiks/test_generator_jit.py`` compares every field of the puzzles and the generator
states after them with the reference on thousands of queries per preset. The first call in a
process loads the compiled code from numba's cache (``__pycache__``, about 0.5 s), or compiles it
(about 5-10 s on a cold cache).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit
from numba.np.random.generator_core import next_double, next_uint32

from envs.rubiks import generator as ref
from envs.rubiks.cube import N_PAIRS, N_WORLDS
from envs.rubiks.solver import CLUE_POOL
from envs.rubiks.solver_jit import (
    SolverTables,
    lowest_bit,
    needed_set,
    popcount,
    read_clues,
    solver_tables,
)
from envs.rubiks.types import MAX_CLUES, N_TOPICS, Puzzle


class DrawTables(NamedTuple):
    """The recipe of :mod:`envs.rubiks.generator` as the kernel reads it."""

    recipes: np.ndarray
    """``(n_recipes, 3)`` int64 rows (pairs left, dependent clues, kind code)"""
    recipe_cdf: np.ndarray
    """``(n_recipes,)`` float64: numpy's cdf of the recipe probabilities"""
    dep: np.ndarray
    """``(n_kinds, n)`` int64: pool indices of the dependent clues of each kind (-1 padding)"""
    dep_len: np.ndarray
    """``(n_kinds,)`` int64: the number of clues of each kind"""
    indep: np.ndarray
    """``(n_indep,)`` int64: pool indices of the world-independent clues"""
    indep_bits: np.ndarray
    """``(n_indep,)`` int64: pairs each finds in every world (``generator._INDEP_BITS``)"""
    corners: np.ndarray
    """``(n_corner,)`` int64: pool indices of the corner (distractor) clues"""
    pool: np.ndarray
    """``(n_pool, 3)`` int64: ``solver.CLUE_POOL``"""
    max_tries: int
    """attempts before giving up (``generator._MAX_TRIES``)"""
    max_share: float
    """largest share of worlds agreeing on an answer (``generator._MAX_SHARE``)"""
    max_clues: int
    """clue slots (``types.MAX_CLUES``)"""


def numpy_cdf(p: np.ndarray) -> np.ndarray:
    """The cdf ``Generator.choice(n, p=p)`` searches: ``p.cumsum() / its last entry``."""
    cdf = np.asarray(p, dtype=np.float64).cumsum()
    cdf /= cdf[-1]
    return cdf


def draw_tables() -> DrawTables:
    """The :class:`DrawTables` of the current generator recipe."""
    kinds = sorted({kind for _, _, kind in ref._RECIPES})
    width = max(len(ref._DEP[kind]) for kind in kinds)
    dep = np.full((len(kinds), width), -1, dtype=np.int64)
    for i, kind in enumerate(kinds):
        dep[i, : len(ref._DEP[kind])] = ref._DEP[kind]
    # numpy samples without replacement by Floyd's algorithm only up to 10,000 items
    assert width <= 10_000
    return DrawTables(
        recipes=np.array(
            [(left, n_dep, kinds.index(kind)) for left, n_dep, kind in ref._RECIPES], np.int64
        ),
        recipe_cdf=numpy_cdf(ref._RECIPE_P),
        dep=dep,
        dep_len=np.array([len(ref._DEP[kind]) for kind in kinds], np.int64),
        indep=ref._INDEP.astype(np.int64),
        indep_bits=np.asarray(ref._INDEP_BITS, dtype=np.int64),
        corners=ref._CORNER_CLUES.astype(np.int64),
        pool=CLUE_POOL.astype(np.int64),
        max_tries=int(ref._MAX_TRIES),
        max_share=float(ref._MAX_SHARE),
        max_clues=int(MAX_CLUES),
    )


@njit(cache=True, nogil=True)
def _integers(rng, high):  # pragma: no cover - compiled
    """``rng.integers(0, high)`` for 1 <= high <= 2**32 - 1: numpy's Lemire rejection on 32-bit
    draws (``buffered_bounded_lemire_uint32``); no draw when ``high == 1``."""
    rng_excl = np.uint64(high)
    if rng_excl == 1:
        return 0
    m = np.uint64(next_uint32(rng.bit_generator)) * rng_excl
    leftover = m & np.uint64(0xFFFFFFFF)
    if leftover < rng_excl:
        threshold = (np.uint64(0xFFFFFFFF) - (rng_excl - np.uint64(1))) % rng_excl
        while leftover < threshold:
            m = np.uint64(next_uint32(rng.bit_generator)) * rng_excl
            leftover = m & np.uint64(0xFFFFFFFF)
    return np.int64(m >> np.uint64(32))


@njit(cache=True, nogil=True)
def _random(rng):  # pragma: no cover - compiled
    """``rng.random()``: the bit generator's double (PCG64: ``(next_uint64 >> 11) / 2**53``)."""
    return next_double(rng.bit_generator)


@njit(cache=True, nogil=True)
def _choice_p(rng, cdf):  # pragma: no cover - compiled
    """``rng.choice(len(cdf), p=p)`` given ``cdf = numpy_cdf(p)``: one ``random()``, then the
    number of cdf entries <= it (``searchsorted`` side ``"right"`` on a sorted cdf)."""
    u = _random(rng)
    i = 0
    while i < cdf.shape[0] and cdf[i] <= u:
        i += 1
    return i


@njit(cache=True, nogil=True)
def _permutation(rng, n, out):  # pragma: no cover - compiled
    """``rng.permutation(n)`` into ``out[:n]``: numpy's Fisher-Yates shuffle of ``arange(n)``
    (i = n - 1 .. 1 swaps with j drawn in [0, i] by masked rejection on 32-bit draws,
    ``random_interval``); as numba's ``permutation`` without its per-swap array views."""
    for i in range(n):
        out[i] = i
    for i in range(n - 1, 0, -1):
        mask = i
        mask |= mask >> 1
        mask |= mask >> 2
        mask |= mask >> 4
        mask |= mask >> 8
        mask |= mask >> 16
        j = next_uint32(rng.bit_generator) & mask
        while j > i:
            j = next_uint32(rng.bit_generator) & mask
        tmp = out[j]
        out[j] = out[i]
        out[i] = tmp


@njit(cache=True, nogil=True)
def _sample(rng, pop, size, out):  # pragma: no cover - compiled
    """``rng.choice(pop, size, replace=False)`` (pop <= 10,000) into ``out[:size]``: numpy's
    Floyd's algorithm (j drawn in [0, j] for j = pop - size .. pop - 1; j itself when the draw
    was taken before), then its Fisher-Yates shuffle with Lemire's bounded ints."""
    for m in range(size):
        j = pop - size + m
        val = _integers(rng, j + 1)
        for i in range(m):
            if out[i] == val:
                val = j
                break
        out[m] = val
    for i in range(size - 1, 0, -1):
        j = _integers(rng, i + 1)
        tmp = out[j]
        out[j] = out[i]
        out[i] = tmp


@njit(cache=True, nogil=True)
def _clue_set(rng, g, left, n_dep, kind, n_pairs, order, dep, chosen, out):  # pragma: no cover
    """``generator._clue_set`` into ``out``; returns the number of clues. Independent clues
    in a random order until at most ``left`` pairs are unaccounted for, ``n_dep`` dependent
    clues of ``kind``, maybe a corner clue, then the whole set shuffled (``order``, ``dep``,
    ``chosen``: buffers)."""
    _permutation(rng, g.indep.shape[0], order)
    n = 0
    found = 0
    for o in order:
        f = found | g.indep_bits[o]
        if f == found or n_pairs - popcount(f) < left:
            continue
        chosen[n] = g.indep[o]
        n += 1
        found = f
        if n_pairs - popcount(found) <= left:
            break
    _sample(rng, g.dep_len[kind], n_dep, dep)
    for i in range(n_dep):
        chosen[n] = g.dep[kind, dep[i]]
        n += 1
    if _random(rng) < 0.5:  # a distractor clue about corners
        chosen[n] = g.corners[_integers(rng, g.corners.shape[0])]
        n += 1
    _permutation(rng, n, order)
    for i in range(n):
        out[i] = chosen[order[i]]
    return n


@njit(cache=True, nogil=True)
def _world(rng, g, t, idx, n, ok, missing, possible, answer, counts):  # pragma: no cover
    """The rest of ``generator._attempt`` for the clues ``CLUE_POOL[idx[:n]]``: fills
    ``missing`` (edge sets), ``possible`` and ``answer`` (for possible worlds); returns the
    drawn world, or -1 when the clue set is rejected (too many clues, no possible world, or
    one answer shared by more than ``max_share`` but not all of the possible worlds)."""
    if n > g.max_clues:
        return -1
    read_clues(t.pool_ok, t.direct, t.pool_opp, t.opp_img, t.edge_bits, idx, n, ok, missing)
    n_possible = 0
    for p in range(counts.shape[0]):
        counts[p] = 0
    for w in range(missing.shape[0]):
        m = missing[w]
        possible[w] = ok[w] and m != 0 and (m & (m - 1)) == 0  # exactly one edge
        if possible[w]:
            answer[w] = lowest_bit(m)
            counts[answer[w]] += 1
            n_possible += 1
    if n_possible == 0:
        return -1
    top = 0
    for p in range(counts.shape[0]):
        top = max(top, counts[p])
    share = top / n_possible
    if g.max_share < share < 1.0:  # most worlds agree on the answer: a memorizer's shortcut
        return -1
    pick = _integers(rng, n_possible)  # the pick-th possible world
    for w in range(possible.shape[0]):
        if possible[w]:
            if pick == 0:
                return w
            pick -= 1
    return -1  # never: pick < n_possible


@njit(cache=True, nogil=True)
def draw_kernel(rng, k_cdf, g, t, clues, possible, missing, needed):  # pragma: no cover
    """``PuzzleGenerator.draw`` into ``clues`` ``(max_clues, 3)`` int64, ``possible`` ``(30,)``
    bool, ``missing`` ``(30, 15)`` bool and ``needed`` ``(N_TOPICS,)`` bool; returns
    ``(k, answer, world)``, ``world = -1`` when every attempt failed."""
    n_worlds, n_pairs = missing.shape
    n_indep = g.indep.shape[0]
    most = n_indep + g.dep.shape[1] + 1  # clues in a set, at most
    order = np.empty(most, np.int64)
    dep = np.empty(g.dep.shape[1], np.int64)
    chosen = np.empty(most, np.int64)
    idx = np.empty(most, np.int64)
    ok = np.empty(n_worlds, np.bool_)
    edges = np.empty(n_worlds, np.int64)
    answer = np.zeros(n_worlds, np.int64)
    counts = np.empty(n_pairs, np.int64)
    k = _choice_p(rng, k_cdf)
    for _ in range(g.max_tries):
        r = _choice_p(rng, g.recipe_cdf)
        left, n_dep, kind = g.recipes[r, 0], g.recipes[r, 1], g.recipes[r, 2]
        n = _clue_set(rng, g, left, n_dep, kind, n_pairs, order, dep, chosen, idx)
        world = _world(rng, g, t, idx, n, ok, edges, possible, answer, counts)
        if world < 0:
            continue
        s = needed_set(t.agree, t.by_size, possible, answer, world)
        if popcount(s) != k:
            continue
        # the Puzzle's arrays (generator._puzzle)
        for i in range(clues.shape[0]):
            for c in range(3):
                clues[i, c] = g.pool[idx[i], c] if i < n else (-1 if c == 0 else 0)
        for w in range(n_worlds):
            for p in range(n_pairs):
                missing[w, p] = (edges[w] >> p) & 1
        for i in range(needed.shape[0]):
            needed[i] = (s >> i) & 1
        return k, answer[world], world
    return k, -1, -1


_DRAW: DrawTables = draw_tables()
_SOLVER: SolverTables = solver_tables()


class CompiledPuzzleGenerator(ref.PuzzleGenerator):
    """:class:`~envs.rubiks.generator.PuzzleGenerator` whose :meth:`draw` runs compiled: the
    same puzzles from the same streams, leaving the stream in the same state, 15-40x faster
    (``benchmarks/bench_generator.py``). Same arguments, cache and named puzzles."""

    backend = "numba"

    def __init__(self, facts_needed: tuple[float, ...]) -> None:
        super().__init__(facts_needed)
        self._k_cdf = numpy_cdf(self.facts_needed)

    def draw(self, rng: np.random.Generator) -> Puzzle:
        """A random puzzle drawn from ``rng`` (uncached), as ``PuzzleGenerator.draw``."""
        clues = np.empty((MAX_CLUES, 3), np.int64)
        possible = np.empty(N_WORLDS, bool)
        missing = np.empty((N_WORLDS, N_PAIRS), bool)
        needed = np.empty(N_TOPICS, bool)
        k, answer, world = draw_kernel(
            rng, self._k_cdf, _DRAW, _SOLVER, clues, possible, missing, needed
        )
        if world < 0:  # pragma: no cover - the tries always succeed in practice
            raise RuntimeError(f"no puzzle with {k} needed facts in {_DRAW.max_tries} tries")
        return Puzzle(clues, int(answer), int(world), possible, missing, needed)
