"""Exact enumerating solver: which two-coloured pieces can be missing, given clues and facts.

Every clue is read strictly, in each of the 30 cube worlds (colourings up to rotation,
``cube.WORLDS``):

- "All c pieces": every c edge. "Every c piece that borders d": the c/d edge (none if c and d
  are opposite faces: the clue holds vacuously).
- "With d on top and the c centre facing you, the edge right of (below) the c centre": the c
  edge on that side. It *presupposes* that d can be on top while c faces you (d is neither c nor
  opposite c); in a world where it cannot, the clue is false, so the world is ruled out.
- "For every c piece found, the piece in the same place on the face opposite c": applied to
  every c edge found by any clue, including pieces found by another such clue (to a fixpoint).

In a world the clues leave a set of edges unaccounted for (``missing``). The puzzle says one
piece was removed and the clues account for every other two-coloured piece, so a world is
``possible`` only if every presupposition holds and exactly one edge is unaccounted for. Given
the cube facts held (per topic a value, ``cube.TOPIC_VALUES`` coding, or -1 unknown) the
candidates are the missing edges of the possible worlds that agree with every fact held; the
answer is determined when one candidate remains.
"""

from __future__ import annotations

import numpy as np

from envs.rubiks.cube import (
    EDGE_OF_WORLD,
    N_PAIRS,
    N_WORLDS,
    OPP,
    PAIR_INDEX,
    RIGHT,
    TOPIC_VALUES,
)
from envs.rubiks.types import ALL, BELOW, BORDER, CORNERS, N_TOPICS, OPPOSITE, RIGHT_OF

_W = np.arange(N_WORLDS)


def _clue_pool() -> np.ndarray:
    """Every clue the generator can state, ``(n, 3)`` rows (type, c, d)."""
    out = []
    for c in range(6):
        out += [(ALL, c, 0), (CORNERS, c, 0), (OPPOSITE, c, 0)]
        for d in range(6):
            if d != c:
                out += [(BORDER, c, d), (RIGHT_OF, c, d), (BELOW, c, d)]
    return np.array(out, dtype=np.int64)


CLUE_POOL = _clue_pool()
_POOL_KEY = {tuple(r): j for j, r in enumerate(CLUE_POOL.tolist())}


def _pool_tables() -> tuple[np.ndarray, np.ndarray]:
    ok = np.ones((len(CLUE_POOL), N_WORLDS), bool)
    direct = np.zeros((len(CLUE_POOL), N_WORLDS, N_PAIRS), bool)
    for j, (typ, c, d) in enumerate(CLUE_POOL.tolist()):
        if typ == ALL:
            direct[j][:, PAIR_INDEX[c][PAIR_INDEX[c] >= 0]] = True
        elif typ == BORDER:
            direct[j][:, PAIR_INDEX[c, d]] = True
        elif typ in (RIGHT_OF, BELOW):
            good = OPP[:, c] != d
            ok[j] = good
            x = RIGHT[:, c, d] if typ == RIGHT_OF else OPP[:, d]
            direct[j, _W[good], PAIR_INDEX[c, x[good]]] = True
    return ok, direct & EDGE_OF_WORLD[None]


POOL_OK, POOL_DIRECT = _pool_tables()
"""``(n_pool, 30)`` presupposition holds; ``(n_pool, 30, 15)`` edges the clue finds directly"""


def _opp_maps() -> np.ndarray:
    """``(6, 30, 15, 15)``: OPPOSITE(c) maps found edge {c, x} to {opp(c), x} in each world."""
    out = np.zeros((6, N_WORLDS, N_PAIRS, N_PAIRS), bool)
    for c in range(6):
        for w in range(N_WORLDS):
            oc = OPP[w, c]
            for x in range(6):
                if x not in (c, oc):
                    out[c, w, PAIR_INDEX[c, x], PAIR_INDEX[oc, x]] = True
    return out


OPP_MAPS = _opp_maps()


def pool_index(clues: np.ndarray) -> np.ndarray:
    """Rows ``(n, 3)`` (padding rows with type -1 are skipped) -> indices into ``CLUE_POOL``."""
    rows = [tuple(r) for r in np.asarray(clues, dtype=np.int64).tolist() if r[0] >= 0]
    try:
        return np.array([_POOL_KEY[r] for r in rows], dtype=np.int64)
    except KeyError as e:
        raise ValueError(f"not a clue: {e.args[0]} (rows are (type, c, d))") from None


def world_tables(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Strict reading of the clues ``CLUE_POOL[idx]`` in every world.

    Returns ``ok`` ``(30,)`` (every presupposition holds), ``found`` ``(30, 15)`` (edges
    accounted for, OPPOSITE clues applied to a fixpoint) and ``missing`` ``(30, 15)``."""
    idx = np.asarray(idx, dtype=np.int64)
    ok = POOL_OK[idx].all(axis=0)
    found = POOL_DIRECT[idx].any(axis=0)
    opp = CLUE_POOL[idx][CLUE_POOL[idx, 0] == OPPOSITE, 1]
    if len(opp):
        step = OPP_MAPS[opp].any(axis=0).astype(np.int64)  # (30, 15, 15)
        for _ in range(N_PAIRS):
            new = found | (np.einsum("wi,wij->wj", found.astype(np.int64), step) > 0)
            if (new == found).all():
                break
            found = new
    return ok, found, EDGE_OF_WORLD & ~found


def tables(clues: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``possible`` ``(30,)`` and ``missing`` ``(30, 15)`` of clue rows ``(n, 3)``."""
    ok, _, missing = world_tables(pool_index(clues))
    return ok & (missing.sum(axis=1) == 1), missing


def consistent(facts: np.ndarray) -> np.ndarray:
    """``(n, N_TOPICS)`` fact values (-1 unknown) -> ``(n, 30)`` worlds agreeing with all."""
    f = np.asarray(facts, dtype=np.int64)[:, None, :]
    return ((f < 0) | (f == TOPIC_VALUES[None])).all(axis=2)


def candidates(possible: np.ndarray, missing: np.ndarray, facts: np.ndarray) -> np.ndarray:
    """Batched candidates: ``(n, 30)``, ``(n, 30, 15)``, ``(n, N_TOPICS)`` -> ``(n, 15)`` bool."""
    live = possible & consistent(facts)
    return (live[:, :, None] & missing).any(axis=1)


def needs(possible: np.ndarray, missing: np.ndarray, facts: np.ndarray) -> np.ndarray:
    """``(n, N_TOPICS)`` bool: topic t is unknown and two live worlds (possible, agreeing with
    the facts) that disagree on t's value also disagree on the missing pieces, so looking t up
    can narrow the candidates. Shapes as :func:`candidates`."""
    live = possible & consistent(facts)  # (n, 30)
    both = live[:, :, None] & live[:, None, :]  # (n, 30, 30)
    code = missing.astype(np.int64) @ _BITS  # (n, 30): each world's missing pieces as bits
    diff_m = code[:, :, None] != code[:, None, :]  # (n, 30, 30)
    pairs = (both & diff_m).reshape(len(live), -1).astype(np.float32)
    hit = pairs @ _DIFF_V > 0  # (n, T): some such pair of worlds disagrees on t (exact counts)
    return hit & (np.asarray(facts) < 0)


_BITS = np.int64(1) << np.arange(N_PAIRS, dtype=np.int64)
_DIFF_V = (
    (TOPIC_VALUES.T[:, :, None] != TOPIC_VALUES.T[:, None, :]).reshape(N_TOPICS, -1).T
).astype(np.float32)
"""``(30 * 30, T)``: whether two worlds disagree on topic t's value"""


def solve(clues: np.ndarray, facts: np.ndarray) -> np.ndarray:
    """Candidate pair indices of clue rows ``(n, 3)`` given facts ``(N_TOPICS,)`` (-1 unknown)."""
    possible, missing = tables(clues)
    return np.flatnonzero(candidates(possible[None], missing[None], np.asarray(facts)[None])[0])


SUBSETS = ((np.arange(2**N_TOPICS)[:, None] >> np.arange(N_TOPICS)) & 1).astype(bool)
"""``(16, N_TOPICS)``: every topic subset"""


_BY_SIZE = np.argsort(SUBSETS.sum(axis=1), kind="stable")


def needed_by_world(possible: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """``(30, N_TOPICS)`` bool: per world, a smallest topic set (the first by size, then index)
    whose facts in that world pin its missing edge among the possible worlds (rows of
    impossible worlds are meaningless). Shapes: ``(30,)``, ``(30, 15)``."""
    answer = missing.argmax(axis=1)  # (30,)
    same = TOPIC_VALUES[:, None, :] == TOPIC_VALUES[None, :, :]  # (30 world, 30 other, T)
    agree = (same[None] | ~SUBSETS[:, None, None, :]).all(axis=3)  # (16, 30, 30)
    rival = possible[None, None, :] & (answer[None, None, :] != answer[None, :, None])
    pinned = ~(agree & rival).any(axis=2)  # (16, 30)
    first = pinned[_BY_SIZE].argmax(axis=0)  # the full set always pins: worlds differ
    return SUBSETS[_BY_SIZE[first]]


def minimal_needed(possible: np.ndarray, missing: np.ndarray, world: int) -> np.ndarray:
    """``(N_TOPICS,)`` bool: a smallest topic set whose true facts in ``world`` leave one
    candidate (the row of :func:`needed_by_world` for that world, computed alone)."""
    answer = missing.argmax(axis=1)
    same = TOPIC_VALUES == TOPIC_VALUES[world]  # (30, T)
    agree = (same[None] | ~SUBSETS[:, None, :]).all(axis=2)  # (16, 30)
    rival = possible & (answer != answer[world])
    pinned = ~(agree & rival).any(axis=1)
    return SUBSETS[_BY_SIZE[int(pinned[_BY_SIZE].argmax())]].copy()


def prior_guess(possible: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """The memorizer's answer from the clues alone: ``(n, 30)``, ``(n, 30, 15)`` -> ``(n,)`` the
    pair missing in the most possible worlds, the world being uniform over them (ties: the
    lowest pair index)."""
    return (possible[:, :, None] & missing).sum(axis=1).argmax(axis=1)


_ = CORNERS  # a distractor clue: it never finds an edge
