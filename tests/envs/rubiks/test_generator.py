import numpy as np
import pytest

from envs.rubiks.generator import PuzzleGenerator


def test_same_query_same_puzzle_and_different_queries_differ():
    gen = PuzzleGenerator((0.1, 0.3, 0.4, 0.2))
    a, b = gen(12345), PuzzleGenerator((0.1, 0.3, 0.4, 0.2))(12345)
    assert (a.clues == b.clues).all() and a.answer == b.answer
    assert len({gen(q).clues.tobytes() for q in range(50)}) == 50


def test_needed_fact_counts_follow_the_distribution():
    gen = PuzzleGenerator((0.0, 0.0, 1.0, 0.0))
    assert {gen(q).n_needed for q in range(40)} == {2}


@pytest.mark.parametrize("bad", [(0.5, 0.5), (0.5, 0.6, 0, 0), (-0.1, 1.1, 0, 0)])
def test_bad_distribution_is_rejected(bad):
    with pytest.raises(ValueError, match="facts_needed"):
        PuzzleGenerator(bad)


def test_clue_rows_are_padded_with_type_minus_one():
    p = PuzzleGenerator((1.0, 0, 0, 0))(0)
    present = p.clues[:, 0] >= 0
    assert present.sum() >= 2 and (np.diff(present.astype(int)) <= 0).all()
