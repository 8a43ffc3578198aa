"""A real Rubik's cube model: 6 centres, 12 edges, 8 corners, in each of 30 colour schemes.

Coordinates: x = right, y = front, z = up; a piece is a vector in {-1, 0, 1}^3 (one non-zero
coordinate: centre, two: edge, three: corner) and carries the colours of the faces it touches.
Standard (Western) scheme: white up, yellow down, green front, blue back, red right, orange left
(white/yellow, blue/green, red/orange opposite).

A *world* is a colouring of the six faces up to rotation (30 of them); world 0 is the standard
cube. Each puzzle's cube carries its owner's own stickers: its world is drawn uniformly from the
30, and only search can tell which. The four cube facts (``TOPIC_VALUES``) pin the world; the
solver enumerates worlds to decide what the clues and the facts held imply.
"""

from __future__ import annotations

import itertools

import numpy as np

COLOURS = ("white", "yellow", "blue", "green", "red", "orange")
W, Y, B, G, R, O = range(6)  # noqa: E741 - colour initials
FACE_NAMES = ("up", "down", "front", "back", "right", "left")
FACE_NORMALS = np.array(
    [[0, 0, 1], [0, 0, -1], [0, 1, 0], [0, -1, 0], [1, 0, 0], [-1, 0, 0]], dtype=np.int64
)
STANDARD = np.array([W, Y, G, B, R, O], dtype=np.int64)
"""colour of each face (up, down, front, back, right, left) on the standard cube"""


def _face_of(normal: np.ndarray) -> int:
    return int(np.flatnonzero((FACE_NORMALS == normal).all(axis=1))[0])


# ---------------------------------------------------------------- pieces of the standard cube
_POS = [np.array(p) for p in itertools.product((-1, 0, 1), repeat=3) if any(p)]


def _piece_faces(p: np.ndarray) -> tuple[int, ...]:
    return tuple(sorted(_face_of(np.eye(3, dtype=np.int64)[a] * p[a]) for a in np.flatnonzero(p)))


PIECE_POSITIONS = np.array(_POS, dtype=np.int64)
"""``(26, 3)`` piece positions"""
PIECE_FACES = [_piece_faces(p) for p in _POS]
PIECE_COLOURS = [tuple(sorted(int(STANDARD[f]) for f in fs)) for fs in PIECE_FACES]
CENTRES = [c for c in PIECE_COLOURS if len(c) == 1]
EDGES = [c for c in PIECE_COLOURS if len(c) == 2]
CORNERS = [c for c in PIECE_COLOURS if len(c) == 3]
assert len(CENTRES) == 6 and len(EDGES) == 12 and len(CORNERS) == 8


def adjacent_pieces(i: int) -> list[int]:
    """Indices of the pieces that touch piece ``i`` (share a face of the small cubes)."""
    d = np.abs(PIECE_POSITIONS - PIECE_POSITIONS[i]).sum(axis=1)
    return [int(j) for j in np.flatnonzero(d == 1)]


# ---------------------------------------------------------------- colour pairs (answer space)
PAIRS = list(itertools.combinations(range(6), 2))
"""the 15 unordered colour pairs; 12 are edges of a cube, 3 are opposite pairs"""
PAIR_INDEX = np.full((6, 6), -1, dtype=np.int64)
for _k, (_a, _b) in enumerate(PAIRS):
    PAIR_INDEX[_a, _b] = PAIR_INDEX[_b, _a] = _k
PAIR_COLOURS = np.array(PAIRS, dtype=np.int64)
N_PAIRS = len(PAIRS)


def pair_name(k: int) -> str:
    a, b = PAIRS[k]
    return f"{COLOURS[a]}, {COLOURS[b]}"


# ---------------------------------------------------------------- rotations and worlds
def _rotations() -> np.ndarray:
    out = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((-1, 1), repeat=3):
            m = np.zeros((3, 3), dtype=np.int64)
            for r, (c, s) in enumerate(zip(perm, signs, strict=True)):
                m[r, c] = s
            if round(np.linalg.det(m)) == 1:
                out.append(m)
    return np.array(out)


ROTATIONS = _rotations()
"""``(24, 3, 3)`` proper rotations of the cube"""
_FACE_PERMS = np.array([[_face_of(rot @ n) for n in FACE_NORMALS] for rot in ROTATIONS])


def _worlds() -> np.ndarray:
    seen: dict[tuple[int, ...], np.ndarray] = {}
    for perm in itertools.permutations(range(6)):
        col = np.array(perm)
        # rotation r moves face f to face _FACE_PERMS[r, f]
        variants = []
        for fp in _FACE_PERMS:
            rotated = np.empty(6, dtype=np.int64)
            rotated[fp] = col
            variants.append(tuple(rotated.tolist()))
        key = min(variants)
        if key not in seen:
            seen[key] = col
    worlds = list(seen.values())
    std = next(i for i, w in enumerate(worlds) if _same_world(w, STANDARD))
    worlds[0], worlds[std] = worlds[std], worlds[0]
    return np.array(worlds)


def _same_world(a: np.ndarray, b: np.ndarray) -> bool:
    for fp in _FACE_PERMS:
        rotated = np.empty(6, dtype=np.int64)
        rotated[fp] = a
        if (rotated == b).all():
            return True
    return False


WORLDS = _worlds()
"""``(30, 6)`` face colourings up to rotation; row 0 is the standard cube"""
N_WORLDS = len(WORLDS)
OPP = np.empty((N_WORLDS, 6), dtype=np.int64)
"""``OPP[w, c]``: the colour opposite ``c`` in world ``w``"""
RIGHT = np.full((N_WORLDS, 6, 6), -1, dtype=np.int64)
"""``RIGHT[w, front, up]``: colour on the right with ``front`` facing you and ``up`` on top
(-1 if ``up`` is ``front`` or opposite it)"""
for _w, _col in enumerate(WORLDS):
    _face = np.empty(6, dtype=np.int64)
    _face[_col] = np.arange(6)
    for _c in range(6):
        _n = FACE_NORMALS[_face[_c]]
        OPP[_w, _c] = _col[_face_of(-_n)]
        for _u in range(6):
            _nu = FACE_NORMALS[_face[_u]]
            if abs(int(_n @ _nu)) == 0:
                RIGHT[_w, _c, _u] = _col[_face_of(np.cross(_n, _nu))]
EDGE_OF_WORLD = np.array(
    [[OPP[w, a] != b for (a, b) in PAIRS] for w in range(N_WORLDS)], dtype=bool
)
"""``(30, 15)``: whether colour pair k is an edge piece in world w"""
assert (EDGE_OF_WORLD.sum(axis=1) == 12).all()
assert OPP[0, W] == Y and OPP[0, B] == G and OPP[0, R] == O and RIGHT[0, G, W] == R


# ---------------------------------------------------------------- cube facts of each world
_FRONT = np.where(OPP[:, W] == G, B, G)
"""front colour of the orientation fact: green, or blue when green is opposite white"""
N_VALUES = 12
"""values a fact can take: a colour 0..5 (opposite topics); orientation: 6 * (front is blue)
+ the colour on the right"""
TOPIC_VALUES = np.stack(
    [OPP[:, W], OPP[:, G], OPP[:, R], 6 * (_FRONT == B) + RIGHT[np.arange(N_WORLDS), _FRONT, W]],
    axis=1,
)
"""``(30, 4)``: per world the value of each cube fact (opposite of white, of green, of red;
orientation: with white on top and the front colour facing you, the colour on the right)"""
assert (TOPIC_VALUES >= 0).all() and len({tuple(v) for v in TOPIC_VALUES.tolist()}) == N_WORLDS
JAPANESE = int(
    next(w for w in range(N_WORLDS) if OPP[w, W] == B and OPP[w, G] == Y and RIGHT[w, G, W] == R)
)
"""the Japanese scheme (white/blue, green/yellow, red/orange opposite)"""
DECOY_WORLD = np.where(np.arange(N_WORLDS) == 0, JAPANESE, 0)
"""``(30,)``: the scheme a generic web page describes: the standard one, or the Japanese one
for a cube that has the standard scheme"""
