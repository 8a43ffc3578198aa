"""Compiled (numba) solver kernels for the puzzle generator, on bit masks.

The same strict reading of clues as :mod:`envs.rubiks.solver` (``world_tables``,
``minimal_needed``), for one clue set at a time: an edge set of a world is an int whose bit p is
colour pair p (``cube.PAIRS``); a topic set is an int whose bit t is topic t (bit order of
``solver.SUBSETS``). ``tests/envs/rubiks/test_generator_jit.py`` checks both against the solver.

The cube and solver tables (:class:`SolverTables`, made by :func:`solver_tables`) are passed to
the kernels as arguments instead of being read as globals: numba's on-disk cache (``cache=True``)
is keyed on this file only, so baked-in copies of another module's tables could go stale.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from envs.rubiks import solver
from envs.rubiks.cube import EDGE_OF_WORLD, N_PAIRS, TOPIC_VALUES
from envs.rubiks.types import OPPOSITE


class SolverTables(NamedTuple):
    """The solver's tables as the kernels read them (``n_pool = len(solver.CLUE_POOL)``)."""

    pool_ok: np.ndarray
    """``(n_pool, 30)`` bool: the clue's presupposition holds in the world"""
    direct: np.ndarray
    """``(n_pool, 30)`` int64 edge sets: the edges the clue finds directly in the world"""
    pool_opp: np.ndarray
    """``(n_pool,)`` int64: colour c of an OPPOSITE(c) clue, -1 for other clues"""
    opp_img: np.ndarray
    """``(6, 30, n_chunks, 32)`` int64 edge sets: the edges OPPOSITE(c) adds in the world for
    the found edges ``m << (CHUNK * i)`` (m < 32) of chunk i"""
    edge_bits: np.ndarray
    """``(30,)`` int64 edge sets: the 12 edges of each world"""
    agree: np.ndarray
    """``(30, 30)`` int64 topic sets: the topics on which worlds w and v have the same fact"""
    by_size: np.ndarray
    """``(16,)`` int64: topic sets by size, then index (``solver._BY_SIZE``)"""


def bits(a: np.ndarray) -> np.ndarray:
    """``(..., n)`` bool -> ``(...,)`` int64 bit masks (bit i is ``a[..., i]``)."""
    a = np.asarray(a, dtype=bool)
    return (a.astype(np.int64) << np.arange(a.shape[-1], dtype=np.int64)).sum(axis=-1)


def unbits(m: np.ndarray, n: int) -> np.ndarray:
    """Inverse of :func:`bits`: ``(...,)`` int64 -> ``(..., n)`` bool."""
    return (np.asarray(m, dtype=np.int64)[..., None] >> np.arange(n, dtype=np.int64)) & 1 > 0


CHUNK = 5
"""bits of an edge set looked up at once in ``SolverTables.opp_img``"""


def solver_tables() -> SolverTables:
    """The :class:`SolverTables` of the current cube and clue pool."""
    n_chunks = -(-N_PAIRS // CHUNK)
    sub = unbits(np.arange(2**CHUNK), CHUNK)  # (32, CHUNK): the found edges of a chunk
    found = np.zeros((n_chunks, 2**CHUNK, n_chunks * CHUNK), bool)
    for i in range(n_chunks):
        found[i, :, i * CHUNK : (i + 1) * CHUNK] = sub
    found = found[:, :, :N_PAIRS]  # (n_chunks, 32, 15)
    img = np.einsum("kmp,cwpq->cwkmq", found.astype(np.int64), solver.OPP_MAPS.astype(np.int64))
    is_opp = solver.CLUE_POOL[:, 0] == OPPOSITE
    same = TOPIC_VALUES[:, None, :] == TOPIC_VALUES[None, :, :]  # (30, 30, T)
    return SolverTables(
        pool_ok=np.ascontiguousarray(solver.POOL_OK, dtype=np.bool_),
        direct=bits(solver.POOL_DIRECT),
        pool_opp=np.where(is_opp, solver.CLUE_POOL[:, 1], -1).astype(np.int64),
        opp_img=np.ascontiguousarray(bits(img > 0)),
        edge_bits=bits(EDGE_OF_WORLD),
        agree=bits(same),
        by_size=solver._BY_SIZE.astype(np.int64),
    )


@njit(cache=True, nogil=True)
def popcount(x):  # pragma: no cover - compiled
    """Number of set bits of an int in [0, 2**32) (SWAR: bit counts per 2, 4, 8 bits, summed)."""
    x = x - ((x >> 1) & 0x55555555)
    x = (x & 0x33333333) + ((x >> 2) & 0x33333333)
    x = (x + (x >> 4)) & 0x0F0F0F0F
    return ((x * 0x01010101) >> 24) & 0xFF


@njit(cache=True, nogil=True)
def lowest_bit(x):  # pragma: no cover - compiled
    """Index of the lowest set bit of ``x`` (0 for ``x == 0``, as ``argmax`` of a zero row)."""
    if x == 0:
        return 0
    i = 0
    while not (x >> i) & 1:
        i += 1
    return i


@njit(cache=True, nogil=True)
def read_clues(
    pool_ok, direct, pool_opp, opp_img, edge_bits, idx, n, ok, missing
):  # pragma: no cover - compiled
    """Strict reading of the clues ``CLUE_POOL[idx[:n]]`` in every world (``solver.world_tables``):
    fills ``ok`` ``(30,)`` bool (every presupposition holds) and ``missing`` ``(30,)`` int64 edge
    sets (edges left unaccounted for, OPPOSITE clues applied to a fixpoint)."""
    for w in range(edge_bits.shape[0]):
        good = True
        found = 0
        has_opp = False
        for i in range(n):
            j = idx[i]
            good = good and pool_ok[j, w]
            found |= direct[j, w]
            has_opp = has_opp or pool_opp[j] >= 0
        while has_opp:  # the least fixpoint, as the solver's repeated simultaneous steps
            new = found
            for i in range(n):
                c = pool_opp[idx[i]]
                if c < 0:
                    continue
                for k in range(opp_img.shape[2]):
                    new |= opp_img[c, w, k, (found >> (CHUNK * k)) & (2**CHUNK - 1)]
            if new == found:
                break
            found = new
        ok[w] = good
        missing[w] = edge_bits[w] & ~found


@njit(cache=True, nogil=True)
def needed_set(agree, by_size, possible, answer, w):  # pragma: no cover - compiled
    """The topic set of ``solver.minimal_needed`` for world ``w``: the first set (by size, then
    index) whose true facts in ``w`` leave no possible world with another answer.
    ``possible`` ``(30,)`` bool, ``answer`` ``(30,)`` int64 (read for possible worlds only)."""
    for r in range(by_size.shape[0]):
        s = by_size[r]
        pinned = True
        for v in range(possible.shape[0]):
            if possible[v] and answer[v] != answer[w] and (s & ~agree[w, v]) == 0:
                pinned = False
                break
        if pinned:
            return s
    return by_size[0]  # argmax of an all-False row, as the solver (never: the full set pins)


@njit(cache=True, nogil=True)
def _reason(possible, missing, facts, topic_values, cand, needs):  # pragma: no cover - compiled
    n_worlds, n_pairs = missing.shape[1], missing.shape[2]
    n_topics = facts.shape[1]
    live = np.empty(n_worlds, dtype=np.int64)
    code = np.zeros(n_worlds, dtype=np.int64)
    for i in range(possible.shape[0]):
        m = 0
        for w in range(n_worlds):
            ok = possible[i, w]
            for t in range(n_topics):
                if ok and facts[i, t] >= 0 and facts[i, t] != topic_values[w, t]:
                    ok = False
            if ok:
                live[m] = w
                m += 1
        for p in range(n_pairs):
            cand[i, p] = False
        for j in range(m):
            w = live[j]
            c = 0
            for p in range(n_pairs):
                if missing[i, w, p]:
                    cand[i, p] = True
                    c |= 1 << p
            code[j] = c
        for t in range(n_topics):
            needs[i, t] = False
        for a in range(m):
            for b in range(a + 1, m):
                if code[a] != code[b]:
                    for t in range(n_topics):
                        if topic_values[live[a], t] != topic_values[live[b], t]:
                            needs[i, t] = True
        for t in range(n_topics):
            if facts[i, t] >= 0:
                needs[i, t] = False


def reason(
    possible: np.ndarray, missing: np.ndarray, facts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``solver.candidates`` and ``solver.needs`` in one compiled pass: ``(n, 30)`` bool,
    ``(n, 30, 15)`` bool, ``(n, N_TOPICS)`` int64 facts (-1 unknown) -> ``(n, 15)`` bool
    candidates, ``(n, N_TOPICS)`` bool topics worth looking up (``tests/envs/rubiks`` compares
    both with the solver)."""
    possible = np.ascontiguousarray(possible, dtype=np.bool_)
    missing = np.ascontiguousarray(missing, dtype=np.bool_)
    facts = np.ascontiguousarray(facts, dtype=np.int64)
    n = possible.shape[0]
    cand = np.empty((n, missing.shape[2]), dtype=np.bool_)
    needs = np.empty((n, facts.shape[1]), dtype=np.bool_)
    _reason(possible, missing, facts, TOPIC_VALUES, cand, needs)
    return cand, needs
