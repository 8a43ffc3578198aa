"""Puzzle generator: a puzzle is a pure function of (query id, facts-needed distribution).

Recipe (from the query's own generator): draw the number of facts the puzzle needs, k; pick a
missing edge m of the standard cube; decide which opposite colour pairs stay unmentioned; add
random true clues (never claiming m found) until every other edge of the standard cube is
covered; keep the puzzle if the exact solver (``solver.py``) finds m as the only candidate on
the standard cube and the smallest set of cube facts that pins m has exactly k topics.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from envs.rubiks import solver
from envs.rubiks.cube import EDGE_OF_WORLD, OPP, PAIR_INDEX
from envs.rubiks.types import (
    ALL,
    BELOW,
    BORDER,
    CORNERS,
    MAX_CLUES,
    N_TOPICS,
    OPPOSITE,
    RIGHT_OF,
    Puzzle,
)

_TRUE_EDGES = np.flatnonzero(EDGE_OF_WORLD[0])
_OPP_PAIRS = np.flatnonzero(~EDGE_OF_WORLD[0])  # white-yellow, blue-green, red-orange
_MAX_TRIES = 400
# clue-type weights by the number of facts wanted: more world-dependent clues for larger k
_TYPE_WEIGHTS = {
    0: np.array([4, 3, 1, 0, 0, 0], float),
    1: np.array([3, 3, 1, 1, 1, 2], float),
    2: np.array([2, 2, 1, 2, 2, 3], float),
    3: np.array([1, 2, 1, 4, 2, 3], float),
}


def _all_clues() -> np.ndarray:
    """Every clue that is true on the standard cube, ``(n, 3)``."""
    out = []
    for c in range(6):
        out += [(ALL, c, 0), (CORNERS, c, 0), (OPPOSITE, c, 0)]
        for d in range(6):
            if d != c and OPP[0, c] != d:
                out += [(BORDER, c, d), (RIGHT_OF, c, d), (BELOW, c, d)]
    return np.array(out, dtype=np.int64)


CLUE_POOL = _all_clues()
_POOL_FOUND = np.array([solver.found_by_world(c[None])[0] for c in CLUE_POOL])  # (n, 15)


def _opp_maps() -> np.ndarray:
    """``(6, 15)``: on the standard cube, OPPOSITE(c) maps pair {c, x} to {opp(c), x}."""
    out = np.full((6, 15), -1, dtype=np.int64)
    for c in range(6):
        oc = OPP[0, c]
        for x in range(6):
            if x not in (c, oc):
                out[c, PAIR_INDEX[c, x]] = PAIR_INDEX[oc, x]
    return out


_OPP_MAP = _opp_maps()


def _found_standard(direct: np.ndarray, opposite: list[int]) -> np.ndarray:
    """Pairs found on the standard cube from direct finds ``(15,)`` and OPPOSITE colours."""
    found = direct.copy()
    for c in opposite:
        src = np.flatnonzero((_OPP_MAP[c] >= 0) & direct)
        found[_OPP_MAP[c, src]] = True
    return found


def _attempt(rng: np.random.Generator, k: int) -> Puzzle | None:
    m = int(rng.choice(_TRUE_EDGES))
    n_leave = k if rng.random() < 0.5 else int(rng.integers(0, 4))
    profile = k if rng.random() < 0.5 else int(rng.integers(0, 4))
    leave = rng.permutation(_OPP_PAIRS)[: min(n_leave, 3)]
    forbid = np.zeros(15, bool)
    forbid[m] = True
    forbid[leave] = True
    target = ~forbid
    weights = _TYPE_WEIGHTS[profile][CLUE_POOL[:, 0]].copy()
    weights[_POOL_FOUND[:, forbid].any(axis=1)] = 0.0
    clues: list[int] = []
    direct = np.zeros(15, bool)
    opposite: list[int] = []
    found = direct
    while len(clues) < MAX_CLUES - 1:
        need = target & ~found
        if not need.any():
            break
        useful = (_POOL_FOUND[:, need].any(axis=1)) | (CLUE_POOL[:, 0] == OPPOSITE)
        p = weights * useful
        if p.sum() <= 0:
            return None
        j = int(rng.choice(len(CLUE_POOL), p=p / p.sum()))
        weights[j] = 0.0
        typ, c, _ = CLUE_POOL[j]
        d2 = direct | _POOL_FOUND[j]
        o2 = [*opposite, int(c)] if typ == OPPOSITE else opposite
        f = _found_standard(d2, o2)
        if (f & forbid).any() or (f == found).all():
            continue
        clues.append(j)
        direct, opposite, found = d2, o2, f
    if (target & ~found).any():
        return None
    arr = CLUE_POOL[clues]
    if rng.random() < 0.5:  # a distractor clue about corners
        arr = np.concatenate([arr, [[CORNERS, int(rng.integers(6)), 0]]])
    arr = arr[rng.permutation(len(arr))]
    missing = solver.missing_by_world(arr)
    cand = solver.candidate_table(missing)
    if cand[_FULL].sum() != 1 or not cand[_FULL, m]:
        return None
    needed = solver.minimal_needed(cand, m)
    if int(needed.sum()) != k:
        return None
    padded = np.full((MAX_CLUES, 3), -1, dtype=np.int64)
    padded[: len(arr)] = arr
    padded[len(arr) :, 1:] = 0
    return Puzzle(padded, m, cand, solver.needs_table(missing), needed)


_FULL = int((np.ones(N_TOPICS, np.int64) * 3 ** np.arange(N_TOPICS)).sum())
_CACHE: OrderedDict[tuple, Puzzle] = OrderedDict()
_CACHE_SIZE = 200_000


class PuzzleGenerator:
    """Makes the puzzle of a query id; caches recent ones (generation is a pure function).

    Args:
        facts_needed: probabilities of puzzles needing 0, 1, 2, 3 cube facts (sums to 1).
    Puzzles are cached module-wide (keyed by the distribution and the query id).
    """

    def __init__(self, facts_needed: tuple[float, ...]) -> None:
        p = np.asarray(facts_needed, dtype=np.float64)
        if p.shape != (N_TOPICS,) or (p < 0).any() or not np.isclose(p.sum(), 1.0):
            raise ValueError(
                f"facts_needed must be {N_TOPICS} probabilities (for 0..{N_TOPICS - 1} facts) "
                f"summing to 1, got {facts_needed!r}"
            )
        self.facts_needed = p / p.sum()
        self._key = tuple(np.round(self.facts_needed, 12).tolist())

    def __call__(self, query: int) -> Puzzle:
        q = int(query)
        key = (self._key, q)
        hit = _CACHE.get(key)
        if hit is not None:
            return hit
        rng = np.random.default_rng([q, 0x52554249])
        k = int(rng.choice(N_TOPICS, p=self.facts_needed))
        puzzle = None
        for _ in range(_MAX_TRIES):
            puzzle = _attempt(rng, k)
            if puzzle is not None:
                break
        if puzzle is None:  # pragma: no cover - the tries above always succeed in practice
            raise RuntimeError(f"no puzzle with {k} needed facts for query {q}")
        _CACHE[key] = puzzle
        if len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
        return puzzle
