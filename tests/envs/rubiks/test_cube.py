import numpy as np

from envs.rubiks import cube


def test_piece_counts_and_standard_scheme():
    assert (len(cube.CENTRES), len(cube.EDGES), len(cube.CORNERS)) == (6, 12, 8)
    # opposite pairs of the standard scheme: white/yellow, blue/green, red/orange
    assert cube.OPP[0, cube.W] == cube.Y and cube.OPP[0, cube.B] == cube.G
    assert cube.OPP[0, cube.R] == cube.O
    # edges are exactly the non-opposite pairs
    assert {tuple(e) for e in cube.EDGES} == {
        p for k, p in enumerate(cube.PAIRS) if cube.EDGE_OF_WORLD[0, k]
    }


def test_adjacency_centre_touches_four_edges_edge_two_centres_two_corners():
    for i, cols in enumerate(cube.PIECE_COLOURS):
        adj = [len(cube.PIECE_COLOURS[j]) for j in cube.adjacent_pieces(i)]
        if len(cols) == 1:
            assert sorted(adj) == [2, 2, 2, 2]
        if len(cols) == 2:
            assert sorted(adj) == [1, 1, 3, 3]  # two centres, two corners


def test_thirty_worlds_and_orientation():
    assert cube.N_WORLDS == 30
    # white on top, green in front: red on the right; red in front: blue on the right
    assert cube.RIGHT[0, cube.G, cube.W] == cube.R and cube.RIGHT[0, cube.R, cube.W] == cube.B
    assert (cube.RIGHT[0, cube.W, cube.Y] == -1) and (cube.RIGHT[0, cube.W, cube.W] == -1)
    assert np.unique(cube.WORLDS, axis=0).shape == (30, 6)
