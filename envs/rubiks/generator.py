"""Puzzle generator: a puzzle is a pure function of (query id, facts-needed distribution).

Recipe (from the query's own generator): draw the number of facts the puzzle needs, k; draw a
clue set without looking at any world: world-independent clues ("all c pieces", "every c piece
that borders d") until a few colour pairs are left unaccounted for, then one to three clues whose
meaning depends on the cube's colour scheme ("right of", "below", "opposite"), and sometimes a
distractor about corners; then draw the cube's world uniformly among the worlds in which the
clues, read strictly (``solver.py``), leave exactly one edge unaccounted for and the smallest set
of cube facts that pins it has exactly k topics. Nothing in the clues points at the world: a
memorizer that knows this recipe but not the world guesses the answer shared by most worlds
(``solver.prior_guess``). Named puzzles (:data:`NAMED`, e.g. the paper's GAIA puzzle) are fixed
ones with reserved query ids.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from envs.rubiks import solver
from envs.rubiks.cube import B, G, O, Y
from envs.rubiks.solver import CLUE_POOL, POOL_DIRECT
from envs.rubiks.types import (
    ALL,
    BELOW,
    BORDER,
    CORNERS,
    MAX_CLUES,
    OPPOSITE,
    RIGHT_OF,
    Puzzle,
)

_MAX_TRIES = 5000
_T = CLUE_POOL[:, 0]
_INDEP = np.flatnonzero((_T == ALL) | (_T == BORDER))
_DEP = {
    "any": np.flatnonzero((_T == RIGHT_OF) | (_T == BELOW) | (_T == OPPOSITE)),
    "right": np.flatnonzero(_T == RIGHT_OF),
    "right_opp": np.flatnonzero((_T == RIGHT_OF) | (_T == OPPOSITE)),
    "opp": np.flatnonzero(_T == OPPOSITE),
}
_CORNER_CLUES = np.flatnonzero(_T == CORNERS)
_RECIPES = (
    (2, 1, "any"),
    (3, 1, "any"),
    (2, 1, "right_opp"),
    (4, 1, "opp"),
    (4, 2, "opp"),
    (3, 2, "right"),
)
"""clue-set shapes: (pairs left by the independent clues, dependent clues, their kinds)"""
_RECIPE_P = np.array([0.5, 1, 1, 4, 1, 1]) / 8.5
"""recipe probabilities, the same whatever k is wanted (so the clues say nothing about k);
tilted towards the shapes that most often need two facts (the rarest kind)"""
_MAX_SHARE = 0.4
"""a clue set is kept only if its possible worlds all agree on the answer (k = 0) or no answer
is shared by more than this share of them"""
MAX_FACTS = 2
"""most facts a generated puzzle needs: with per-query colour schemes, clues read strictly need
three facts in about 0.05% of clue sets, too rare to generate"""
NATURAL_RATES = np.array([0.49, 0.37, 0.14])
"""share of puzzles needing 0, 1, 2 facts before the k-rejection (measured on 20,000 clue
sets; ``tests/envs/rubiks/test_generator.py`` checks it): a memorizer that knows the recipe
weighs a world needing k facts by ``facts_needed[k] / NATURAL_RATES[k]``"""

GAIA_CLUES = np.array([[ALL, B, 0], [ALL, O, 0], [CORNERS, G, 0], [BORDER, G, Y], [OPPOSITE, O, 0]])
"""the paper's GAIA puzzle (Appendix A.1) on the standard cube: all blue pieces; the pieces
around the orange centre; the green corners; the green pieces bordering yellow; for every orange
piece found, the one opposite. Answer: green, white."""
NAMED: dict[str, tuple[int, np.ndarray, int]] = {"gaia": (2**62 + 1, GAIA_CLUES, 0)}
"""puzzle name -> (reserved query id, clue rows, world)"""
_NAMED_BY_QUERY = {q: (clues, w) for q, clues, w in NAMED.values()}


def puzzle_query(name: str) -> int:
    """The reserved query id of a named puzzle (``reset(options={"puzzle": name})``)."""
    if name not in NAMED:
        raise ValueError(
            f'options["puzzle"] = {name!r} is not a named puzzle; allowed: {sorted(NAMED)}'
        )
    return NAMED[name][0]


def _puzzle(
    clues: np.ndarray,
    world: int,
    possible: np.ndarray,
    missing: np.ndarray,
    needed: np.ndarray | None = None,
) -> Puzzle:
    padded = np.full((MAX_CLUES, 3), -1, dtype=np.int64)
    padded[: len(clues)] = clues
    padded[len(clues) :, 1:] = 0
    if needed is None:
        needed = solver.minimal_needed(possible, missing, world)
    return Puzzle(padded, int(missing[world].argmax()), int(world), possible, missing, needed)


def make_puzzle(clues: np.ndarray, world: int) -> Puzzle:
    """The :class:`Puzzle` of clue rows ``(n, 3)`` set in ``world``; raises ``ValueError`` when
    a clue does not hold in that world or the clues leave other than exactly one edge
    unaccounted for there."""
    possible, missing = solver.tables(clues)
    if not possible[world]:
        raise ValueError(
            f"the clues do not leave exactly one edge unaccounted for in world {world} "
            f"({int(missing[world].sum())} edges)"
        )
    return _puzzle(np.asarray(clues, dtype=np.int64), world, possible, missing)


_N_PAIRS = POOL_DIRECT.shape[2]
_INDEP_BITS = (POOL_DIRECT[_INDEP].any(axis=1) * (1 << np.arange(_N_PAIRS))).sum(axis=1)
"""per independent clue, the pairs it accounts for in every world, as a bit mask"""


def _shuffled_indep(rng: np.random.Generator) -> tuple[list[int], list[int]]:
    order = rng.permutation(len(_INDEP))
    return _INDEP[order].tolist(), _INDEP_BITS[order].tolist()


def _clue_set(rng: np.random.Generator, left: int, n_dep: int, kind: str) -> np.ndarray:
    """Pool indices: independent clues until at most ``left`` pairs are unaccounted for in
    every world, then ``n_dep`` scheme-dependent clues of ``kind``."""
    chosen: list[int] = []
    found = 0
    for j, bits in zip(*_shuffled_indep(rng), strict=True):
        f = found | bits
        if f == found or _N_PAIRS - f.bit_count() < left:
            continue
        chosen.append(j)
        found = f
        if _N_PAIRS - found.bit_count() <= left:
            break
    chosen += rng.choice(_DEP[kind], size=n_dep, replace=False).tolist()
    if rng.random() < 0.5:  # a distractor clue about corners
        chosen.append(int(rng.choice(_CORNER_CLUES)))
    return np.array(chosen)[rng.permutation(len(chosen))]


def _attempt(rng: np.random.Generator, k: int) -> Puzzle | None:
    left, n_dep, kind = _RECIPES[int(rng.choice(len(_RECIPES), p=_RECIPE_P))]
    idx = _clue_set(rng, left, n_dep, kind)
    if len(idx) > MAX_CLUES:
        return None
    ok, _, missing = solver.world_tables(idx)
    possible = ok & (missing.sum(axis=1) == 1)
    if not possible.any():
        return None
    answers = np.bincount(missing[possible].argmax(axis=1), minlength=missing.shape[1])
    share = answers.max() / answers.sum()
    if _MAX_SHARE < share < 1.0:  # most worlds agree on the answer: a memorizer's shortcut
        return None
    w = int(rng.choice(np.flatnonzero(possible)))
    needed = solver.minimal_needed(possible, missing, w)
    if needed.sum() != k:
        return None
    return _puzzle(CLUE_POOL[idx], w, possible, missing, needed)


_CACHE: OrderedDict[tuple, Puzzle] = OrderedDict()
_CACHE_SIZE = 100_000


def query_rng(query: int) -> np.random.Generator:
    """The random stream a query's puzzle is drawn from."""
    return np.random.default_rng([int(query), 0x52554249])


class PuzzleGenerator:
    """Makes the puzzle of a query id; caches recent ones (generation is a pure function).

    Args:
        facts_needed: probabilities of puzzles needing 0, 1, 2 cube facts (sums to 1).
    Puzzles are cached module-wide (keyed by the distribution, :attr:`backend` and the query id).
    Reserved query ids (:data:`NAMED`) give the named puzzles whatever the distribution. This is
    the reference implementation; ``generator_jit.CompiledPuzzleGenerator`` draws the same
    puzzles from the same streams in compiled code.
    """

    backend = "python"
    """how :meth:`draw` runs (part of the cache key)"""

    def __init__(self, facts_needed: tuple[float, ...]) -> None:
        p = np.asarray(facts_needed, dtype=np.float64)
        if p.shape != (MAX_FACTS + 1,) or (p < 0).any() or not np.isclose(p.sum(), 1.0):
            raise ValueError(
                f"facts_needed must be {MAX_FACTS + 1} probabilities (for 0..{MAX_FACTS} facts) "
                f"summing to 1, got {facts_needed!r}"
            )
        self.facts_needed = p / p.sum()
        self._key = tuple(np.round(self.facts_needed, 12).tolist())

    def memorizer_guess(self, possible: np.ndarray, missing: np.ndarray) -> np.ndarray:
        """The best answer from the clues alone for a memorizer that knows this generator:
        ``(n, 30)``, ``(n, 30, 15)`` -> ``(n,)`` pair indices. The world is uniform over the
        possible worlds, reweighted by ``facts_needed[k] / NATURAL_RATES[k]`` for the k facts
        that world would need (the generator's k-rejection)."""
        k = np.stack(
            [
                solver.needed_by_world(p, m).sum(axis=1)
                for p, m in zip(possible, missing, strict=True)
            ]
        )
        r = np.append(self.facts_needed / NATURAL_RATES, 0.0)[np.minimum(k, MAX_FACTS + 1)]
        score = ((possible * r)[:, :, None] * missing).sum(axis=1)
        return score.argmax(axis=1)

    def draw(self, rng: np.random.Generator) -> Puzzle:
        """A random puzzle drawn from ``rng`` (uncached): k, then :func:`_attempt` until one
        needs k facts."""
        k = int(rng.choice(MAX_FACTS + 1, p=self.facts_needed))
        for _ in range(_MAX_TRIES):
            puzzle = _attempt(rng, k)
            if puzzle is not None:
                return puzzle
        raise RuntimeError(  # pragma: no cover - the tries above always succeed in practice
            f"no puzzle with {k} needed facts in {_MAX_TRIES} tries"
        )

    def __call__(self, query: int) -> Puzzle:
        q = int(query)
        key = (self._key, self.backend, q)
        hit = _CACHE.get(key)
        if hit is not None:
            return hit
        if q in _NAMED_BY_QUERY:
            puzzle = make_puzzle(*_NAMED_BY_QUERY[q])
        else:
            puzzle = self.draw(query_rng(q))
        _CACHE[key] = puzzle
        if len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
        return puzzle
