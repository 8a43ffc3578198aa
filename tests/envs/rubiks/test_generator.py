import numpy as np
import pytest

from envs.rubiks import solver
from envs.rubiks.generator import _RECIPE_P, _RECIPES, NATURAL_RATES, PuzzleGenerator, _clue_set


def test_same_query_same_puzzle_and_different_queries_differ():
    gen = PuzzleGenerator((0.1, 0.4, 0.5))
    a, b = gen(12345), PuzzleGenerator((0.1, 0.4, 0.5))(12345)
    assert (a.clues == b.clues).all() and a.answer == b.answer and a.world == b.world
    assert len({gen(q).clues.tobytes() for q in range(50)}) == 50


def test_needed_fact_counts_follow_the_distribution():
    for k in range(3):
        p = [0.0, 0.0, 0.0]
        p[k] = 1.0
        gen = PuzzleGenerator(tuple(p))
        assert {gen(q).n_needed for q in range(20)} == {k}


def test_worlds_vary_and_the_standard_cube_is_one_case_among_many():
    gen = PuzzleGenerator((0.1, 0.4, 0.5))
    worlds = np.array([gen(2**31 + q).world for q in range(300)])
    assert len(set(worlds.tolist())) >= 25 and (worlds == 0).mean() < 0.1


@pytest.mark.parametrize("bad", [(0.5, 0.5), (0.5, 0.6, 0), (-0.1, 1.1, 0), (0.1, 0.3, 0.4, 0.2)])
def test_bad_distribution_is_rejected(bad):
    with pytest.raises(ValueError, match="facts_needed"):
        PuzzleGenerator(bad)


def test_clue_rows_are_padded_with_type_minus_one():
    p = PuzzleGenerator((1.0, 0, 0))(0)
    present = p.clues[:, 0] >= 0
    assert present.sum() >= 2 and (np.diff(present.astype(int)) <= 0).all()


def test_natural_rates_match_the_recipe():
    """NATURAL_RATES (the memorizer's weights) is the k-share of kept clue sets."""
    rng = np.random.default_rng(0)
    ks = []
    while len(ks) < 1500:
        idx = _clue_set(rng, *_RECIPES[int(rng.choice(len(_RECIPES), p=_RECIPE_P))])
        if len(idx) > 10:
            continue
        ok, _, missing = solver.world_tables(idx)
        possible = ok & (missing.sum(axis=1) == 1)
        if not possible.any():
            continue
        answers = np.bincount(missing[possible].argmax(axis=1), minlength=15)
        if 0.4 < answers.max() / answers.sum() < 1.0:
            continue
        w = int(rng.choice(np.flatnonzero(possible)))
        ks.append(min(int(solver.needed_by_world(possible, missing)[w].sum()), 2))
    share = np.bincount(ks, minlength=3) / len(ks)
    assert np.abs(share - NATURAL_RATES).max() < 0.05


def test_memorizer_is_at_most_half_the_oracle_ceiling():
    """No clue-only shortcut: the best answer from the clues alone is right at most ~40%."""
    gen = PuzzleGenerator((0.1, 0.4, 0.5))
    ps = [gen(2**31 + q) for q in range(400)]
    possible = np.array([p.possible for p in ps])
    missing = np.array([p.missing for p in ps])
    answer = np.array([p.answer for p in ps])
    assert (gen.memorizer_guess(possible, missing) == answer).mean() <= 0.5
    assert (solver.prior_guess(possible, missing) == answer).mean() <= 0.5
