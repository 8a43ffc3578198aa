import numpy as np

from envs.rubiks import solver
from envs.rubiks.cube import PAIR_INDEX, B, G, O, W, Y
from envs.rubiks.generator import PuzzleGenerator
from envs.rubiks.types import ALL, BORDER, CORNERS, N_TOPICS, OPPOSITE


def test_gaia_puzzle_answer_is_green_white_and_needs_two_facts():
    # all blue; around orange; green corners; green bordering yellow; opposite of orange
    clues = np.array([[ALL, B, 0], [ALL, O, 0], [CORNERS, G, 0], [BORDER, G, Y], [OPPOSITE, O, 0]])
    assert solver.solve(clues, np.ones(N_TOPICS, int)).tolist() == [PAIR_INDEX[W, G]]
    assert len(solver.solve(clues, np.zeros(N_TOPICS, int))) > 1  # facts are needed
    cand = solver.candidate_table(solver.missing_by_world(clues))
    assert solver.minimal_needed(cand, PAIR_INDEX[W, G]).sum() == 2


def test_generated_missing_piece_is_the_unique_answer_on_many_queries():
    gen = PuzzleGenerator((0.25, 0.25, 0.25, 0.25))
    for q in range(150):
        p = gen(q)
        clues = p.clues[p.clues[:, 0] >= 0]
        # exact enumeration with every standard fact: only the generated piece is missing
        assert solver.solve(clues, np.ones(N_TOPICS, int)).tolist() == [p.answer]
        # the needed facts alone pin it, and every smaller set does not
        need = p.needed.astype(int)
        assert solver.solve(clues, need).tolist() == [p.answer]
        for t in np.flatnonzero(need):
            fewer = need.copy()
            fewer[t] = 0
            assert len(solver.solve(clues, fewer)) > 1 or p.n_needed > 1


def test_needs_are_only_unknown_topics():
    p = PuzzleGenerator((0, 0, 1.0, 0))(3)
    states = np.array(np.unravel_index(np.arange(81), (3,) * N_TOPICS, order="F")).T
    assert not (p.needs & (states != 0)).any()
