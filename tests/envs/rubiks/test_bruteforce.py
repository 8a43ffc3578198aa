"""An independent brute-force check of the generator: cube geometry, not the solver's tables.

For each of the 30 colourings of the cube (built here from scratch: 720 face colourings reduced
by the 24 rotations) the clues are evaluated by moving a physical cube (rotate so that colour c
faces you and d is on top, then read the piece to the right of or below the centre), OPPOSITE
clues by mirroring found pieces through the centre plane, to a fixpoint. The four cube facts are
read off the same geometry. ``facts_needed`` must be the smallest number of true facts that
leave one candidate, and the answer unique in the cube's own world.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from envs.rubiks.cube import PAIRS, WORLDS  # only to name the puzzle's world and answer
from envs.rubiks.generator import NAMED, PuzzleGenerator
from envs.rubiks.types import ALL, BELOW, BORDER, CORNERS, OPPOSITE, RIGHT_OF

W, Y, B, G, R, O = range(6)  # noqa: E741 - colour initials
NORMALS = [
    np.array(v) for v in ((0, 0, 1), (0, 0, -1), (0, 1, 0), (0, -1, 0), (1, 0, 0), (-1, 0, 0))
]
UP, FRONT, RIGHT = np.array((0, 0, 1)), np.array((0, 1, 0)), np.array((1, 0, 0))


def rotations() -> list[np.ndarray]:
    out = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((-1, 1), repeat=3):
            m = np.zeros((3, 3), int)
            for r, (c, s) in enumerate(zip(perm, signs, strict=True)):
                m[r, c] = s
            if round(np.linalg.det(m)) == 1:
                out.append(m)
    return out


ROTS = rotations()


class Cube:
    """One colouring: ``colour_at[normal]`` -> colour of that face."""

    def __init__(self, faces: tuple[int, ...]) -> None:
        self.face = {tuple(n): c for n, c in zip(NORMALS, faces, strict=True)}
        self.normal = {c: np.array(n) for n, c in self.face.items()}
        self._views: dict[tuple[int, int], np.ndarray | None] = {}
        self._edges: set[frozenset] | None = None

    def key(self) -> tuple:
        return min(
            tuple(self.face[tuple(rot @ n)] for n in NORMALS) for rot in ROTS
        )  # canonical form up to rotation

    def edges(self) -> set[frozenset]:
        if self._edges is None:
            self._edges = self._all_edges()
        return self._edges

    def _all_edges(self) -> set[frozenset]:
        return {
            frozenset((self.face[tuple(a)], self.face[tuple(b)]))
            for a, b in itertools.combinations(NORMALS, 2)
            if a @ b == 0
        }

    def opposite(self, c: int) -> int:
        return self.face[tuple(-self.normal[c])]

    def view(self, front: int, top: int) -> np.ndarray | None:
        """The rotation bringing ``front`` to the front and ``top`` on top, or None."""
        if (front, top) not in self._views:
            self._views[front, top] = self._find_view(front, top)
        return self._views[front, top]

    def _find_view(self, front: int, top: int) -> np.ndarray | None:
        for rot in ROTS:
            if (rot @ self.normal[front] == FRONT).all() and (rot @ self.normal[top] == UP).all():
                return rot
        return None

    def piece_at(self, rot: np.ndarray, pos: np.ndarray) -> frozenset:
        inv = rot.T
        p = inv @ pos
        return frozenset(self.face[tuple(n)] for n in NORMALS if n @ p == 1)


def worlds() -> list[Cube]:
    seen = {}
    for perm in itertools.permutations(range(6)):
        cube = Cube(perm)
        seen.setdefault(cube.key(), cube)
    return list(seen.values())


CUBES = worlds()
assert len(CUBES) == 30


def facts(cube: Cube) -> tuple:
    front = B if cube.opposite(W) == G else G
    (right,) = cube.piece_at(cube.view(front, W), RIGHT)  # the right centre's colour
    return (cube.opposite(W), cube.opposite(G), cube.opposite(R), (front, right))


def read(cube: Cube, clues: np.ndarray) -> tuple[bool, set]:
    """(every presupposition holds, unaccounted-for edges) under the strict reading."""
    found: set[frozenset] = set()
    opposite = []
    for typ, c, d in clues.tolist():
        if typ == ALL:
            found |= {e for e in cube.edges() if c in e}
        elif typ == BORDER:
            found |= {e for e in cube.edges() if e == {c, d}}
        elif typ in (RIGHT_OF, BELOW):
            rot = cube.view(c, d)
            if rot is None:
                return False, set()
            pos = FRONT + (RIGHT if typ == RIGHT_OF else -UP)
            found.add(cube.piece_at(rot, pos))
        elif typ == OPPOSITE:
            opposite.append(c)
        else:
            assert typ == CORNERS
    while True:
        more = set()
        for c in opposite:
            n = cube.normal[c]
            for e in found:
                if c in e and len(e) == 2:
                    (x,) = e - {c}
                    p = n + cube.normal[x]
                    mirror = p - 2 * (p @ n) * n
                    more.add(frozenset(cube.face[tuple(v)] for v in NORMALS if v @ mirror == 1))
        if more <= found:
            break
        found |= more
    return True, cube.edges() - found


def check(puzzle) -> None:
    clues = puzzle.clues[puzzle.clues[:, 0] >= 0]
    tables = [read(cube, clues) for cube in CUBES]
    truth = [facts(cube) for cube in CUBES]
    possible = [ok and len(miss) == 1 for ok, miss in tables]
    own = Cube(tuple(WORLDS[puzzle.world].tolist())).key()
    true_world = next(i for i, cube in enumerate(CUBES) if cube.key() == own)
    ok, miss = tables[true_world]
    assert ok and len(miss) == 1, "the cube's own world must leave exactly one piece"
    (answer,) = miss
    best = None
    for size in range(5):
        for subset in itertools.combinations(range(4), size):
            cands = {
                next(iter(tables[w][1]))
                for w in range(30)
                if possible[w] and all(truth[w][t] == truth[true_world][t] for t in subset)
            }
            if cands == {answer}:
                best = size
                break
        if best is not None:
            break
    assert best == puzzle.n_needed
    assert frozenset(PAIRS[puzzle.answer]) == answer


@pytest.mark.slow
def test_facts_needed_and_uniqueness_by_brute_force_on_500_heldout_puzzles():
    gen = PuzzleGenerator((0.1, 0.4, 0.5))
    counts = np.zeros(3, int)
    for q in range(500):
        p = gen(2**31 + q)
        check(p)
        counts[p.n_needed] += 1
    assert (counts > 0).all()


def test_gaia_puzzle_by_brute_force():
    q = NAMED["gaia"][0]
    p = PuzzleGenerator((1.0, 0.0, 0.0))(q)
    check(p)
    assert set(PAIRS[p.answer]) == {G, W}
