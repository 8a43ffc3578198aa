import numpy as np

from envs.rubiks import solver
from envs.rubiks.cube import PAIR_INDEX, TOPIC_VALUES, B, G, O, R, W, Y
from envs.rubiks.generator import GAIA_CLUES, PuzzleGenerator, make_puzzle
from envs.rubiks.types import BELOW, N_TOPICS, RIGHT_OF

NONE = np.full(N_TOPICS, -1)


def test_gaia_puzzle_answer_is_green_white_and_needs_facts():
    # all blue; around orange; green corners; green bordering yellow; opposite of orange
    assert solver.solve(GAIA_CLUES, TOPIC_VALUES[0]).tolist() == [PAIR_INDEX[W, G]]
    assert len(solver.solve(GAIA_CLUES, NONE)) > 1  # facts are needed
    p = make_puzzle(GAIA_CLUES, 0)
    assert p.answer == PAIR_INDEX[W, G] and p.n_needed >= 1


def test_right_of_presupposes_the_two_colours_are_adjacent():
    # "with white on top and the yellow centre facing you": impossible where white/yellow are
    # opposite (the standard cube), so the standard world is ruled out
    clues = np.array([[RIGHT_OF, Y, W], [BELOW, G, R]])
    ok, _, _ = solver.world_tables(solver.pool_index(clues))
    assert not ok[0] and ok.any()


def test_generated_missing_piece_is_the_unique_answer_on_many_queries():
    gen = PuzzleGenerator((0.2, 0.4, 0.4))
    for q in range(150):
        p = gen(q)
        clues = p.clues[p.clues[:, 0] >= 0]
        # with every true fact (the world is pinned): only the generated piece is missing
        assert solver.solve(clues, TOPIC_VALUES[p.world]).tolist() == [p.answer]
        # the needed facts alone pin it, and dropping any one of them does not
        facts = np.where(p.needed, TOPIC_VALUES[p.world], -1)
        assert solver.solve(clues, facts).tolist() == [p.answer]
        for t in np.flatnonzero(p.needed):
            fewer = facts.copy()
            fewer[t] = -1
            assert len(solver.solve(clues, fewer)) > 1


def test_needs_are_only_unknown_topics_and_narrow_the_candidates():
    p = PuzzleGenerator((0, 0, 1.0))(3)
    facts = np.where(np.arange(N_TOPICS) == 0, TOPIC_VALUES[p.world], -1)[None]
    needs = solver.needs(p.possible[None], p.missing[None], facts)[0]
    assert not needs[0]
    before = solver.candidates(p.possible[None], p.missing[None], facts)[0].sum()
    for t in np.flatnonzero(needs):  # looking a needed topic up can narrow the candidates
        more = facts.copy()
        sizes = []
        for w in np.flatnonzero(p.possible & solver.consistent(facts)[0]):
            more[0, t] = TOPIC_VALUES[w, t]
            sizes.append(solver.candidates(p.possible[None], p.missing[None], more)[0].sum())
        assert min(sizes) < before


def test_clashing_facts_leave_no_candidate():
    p = PuzzleGenerator((0, 1.0, 0))(7)
    facts = TOPIC_VALUES[p.world].copy()
    facts[0] = facts[1] = O if facts[0] != O else B  # white and green opposite the same colour
    cand = solver.candidates(p.possible[None], p.missing[None], facts[None])
    assert not cand.any()


def test_compiled_reasoner_equals_candidates_and_needs():
    # the env's reasoner runs solver_jit.reason: the solver's two answers on thousands of
    # puzzles with no, some, all (true) facts and clashing (random) facts
    from envs.rubiks.solver_jit import reason

    gen = PuzzleGenerator((0.2, 0.4, 0.4))
    puzzles = [gen(2**31 + i) for i in range(2000)]
    pos = np.stack([p.possible for p in puzzles])
    mis = np.stack([p.missing for p in puzzles])
    world = np.array([p.world for p in puzzles])
    rng = np.random.default_rng(0)
    facts = np.where(rng.random((2000, N_TOPICS)) < 0.5, TOPIC_VALUES[world], -1)
    facts[:200] = -1
    facts[200:400] = TOPIC_VALUES[world[200:400]]
    clash = rng.random(2000) < 0.1
    facts[clash] = rng.integers(-1, 12, (int(clash.sum()), N_TOPICS))
    cand, needs = reason(pos, mis, facts)
    want_c, want_n = solver.candidates(pos, mis, facts), solver.needs(pos, mis, facts)
    assert np.array_equal(cand, want_c) and np.array_equal(needs, want_n)
    assert want_n.any() and not want_n.all() and (want_c.sum(axis=1) == 0).any()
