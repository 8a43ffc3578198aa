"""Exact enumerating solver: which two-coloured pieces can be missing, given clues and facts.

For each of the 30 possible cube worlds (colourings up to rotation, ``cube.WORLDS``) the clues
determine the found pieces; the missing candidates are the world's edge pieces not found. Given
a set of held statements (knowledge state), the candidates are the union over the worlds that
agree with every held statement. The answer is determined when exactly one candidate remains.
"""

from __future__ import annotations

import numpy as np

from envs.rubiks.cube import EDGE_OF_WORLD, N_PAIRS, N_WORLDS, OPP, PAIR_INDEX, RIGHT
from envs.rubiks.types import (
    ALL,
    BELOW,
    BORDER,
    N_KNOWLEDGE,
    N_TOPICS,
    OPPOSITE,
    RIGHT_OF,
    STATEMENT_COLOURS,
)

_W = np.arange(N_WORLDS)


def _statement_truth() -> np.ndarray:
    """``(30, N_TOPICS)``: 0 standard statement true, 1 decoy true, 2 neither."""
    out = np.full((N_WORLDS, N_TOPICS), 2, dtype=np.int64)
    for t, (anchor, std, decoy) in enumerate(STATEMENT_COLOURS):
        if t < 3:
            val = OPP[:, anchor]
        else:  # orientation: with white on top and `anchor` in front, which colour is right
            val = RIGHT[:, anchor, 0]
        out[val == std, t] = 0
        out[val == decoy, t] = 1
    return out


STATEMENT_TRUTH = _statement_truth()
_STATES = np.array(np.unravel_index(np.arange(N_KNOWLEDGE), (3,) * N_TOPICS, order="F")).T
"""``(81, N_TOPICS)``: knowledge state of each index (0 unknown, 1 standard, 2 decoy)"""
CONSISTENT = (
    (_STATES[:, None, :] == 0) | (_STATES[:, None, :] - 1 == STATEMENT_TRUTH[None, :, :])
).all(axis=2)
"""``(81, 30)``: the worlds that agree with every statement held in a knowledge state"""


def found_by_world(clues: np.ndarray) -> np.ndarray:
    """``(30, 15)`` bool: colour pairs the clues say were found, in each world."""
    direct = np.zeros((N_WORLDS, N_PAIRS), dtype=bool)
    opposite: list[int] = []
    for typ, c, d in clues:
        if typ == ALL:
            direct[:, PAIR_INDEX[c][PAIR_INDEX[c] >= 0]] = True
        elif typ == BORDER:
            direct[:, PAIR_INDEX[c, d]] = True
        elif typ == RIGHT_OF:
            x = RIGHT[:, c, d]
            ok = x >= 0
            direct[_W[ok], PAIR_INDEX[c, x[ok]]] = True
        elif typ == BELOW:
            x = OPP[:, d]
            ok = (d != c) & (x != c)
            direct[_W[ok], PAIR_INDEX[c, x[ok]]] = True
        elif typ == OPPOSITE:
            opposite.append(int(c))
    found = direct.copy()
    for c in opposite:  # "for every c piece found, the piece in its place on the opposite face"
        oc = OPP[:, c]
        for x in range(6):
            if x == c:
                continue
            ok = direct[:, PAIR_INDEX[c, x]] & (x != oc)
            found[_W[ok], PAIR_INDEX[oc[ok], x]] = True
    return found


def missing_by_world(clues: np.ndarray) -> np.ndarray:
    """``(30, 15)`` bool: edge pieces not found, in each world."""
    return EDGE_OF_WORLD & ~found_by_world(clues)


def candidate_table(missing: np.ndarray) -> np.ndarray:
    """``(81, 15)`` bool: candidates for every knowledge state (union over consistent worlds)."""
    return (CONSISTENT.astype(np.int64) @ missing.astype(np.int64)) > 0


def needs_table(missing: np.ndarray) -> np.ndarray:
    """``(81, N_TOPICS)`` bool: topic t is unknown and two consistent worlds that disagree on
    t's statement also disagree on the missing pieces (so looking t up can narrow things)."""
    diff_m = (missing[:, None, :] != missing[None, :, :]).any(axis=2)  # (30, 30)
    diff_s = STATEMENT_TRUTH.T[:, :, None] != STATEMENT_TRUTH.T[:, None, :]  # (T, 30, 30)
    both = CONSISTENT[:, :, None] & CONSISTENT[:, None, :]  # (81, 30, 30)
    hit = (both[:, None] & (diff_m & diff_s)[None]).any(axis=(2, 3))  # (81, T)
    return hit & (_STATES == 0)


def solve(clues: np.ndarray, knowledge: np.ndarray) -> np.ndarray:
    """Candidate pair indices given clues ``(n, 3)`` and a knowledge state ``(N_TOPICS,)``."""
    k = int((np.asarray(knowledge) * 3 ** np.arange(N_TOPICS)).sum())
    return np.flatnonzero(candidate_table(missing_by_world(clues))[k])


def minimal_needed(cand: np.ndarray, answer: int) -> np.ndarray:
    """``(N_TOPICS,)`` bool: the smallest (first in order) set of topics whose standard
    statements make ``answer`` the only candidate."""
    best = None
    for s in range(2**N_TOPICS):
        bits = (s >> np.arange(N_TOPICS)) & 1
        k = int((bits * 3 ** np.arange(N_TOPICS)).sum())
        if cand[k].sum() == 1 and cand[k, answer] and (best is None or bits.sum() < best.sum()):
            best = bits
    return np.zeros(N_TOPICS, bool) if best is None else best.astype(bool)
