"""Rules of the BM25 ranking (envs/species/ranking.py) on generated bases."""

import numpy as np
import pytest

from envs.species.generator import KnowledgeGenerator
from envs.species.ranking import K1, B, bm25_scores, top_k


def test_bm25_hand_computed():
    # 3 docs, field values; query uses fields 0 and 1 with values (5, 7)
    terms = np.array([[[5, 7, 0], [5, 1, 0], [2, 7, 0]]])
    idf = np.array([[[1.0, 2.0, 0.5]] * 3])
    length = np.array([[100.0, 50.0, 150.0]])  # avg 100
    valid = np.ones((1, 3), bool)
    got = bm25_scores(terms, idf, length, valid, np.array([[5, 7, 0]]), np.array([[1, 1, 0]]))
    sat = (K1 + 1) / (1 + K1 * (1 - B + B * length / 100.0))
    # doc 0 matches both (1 + 2), doc 1 field 0 (1), doc 2 field 1 (2)
    np.testing.assert_allclose(got, np.array([[3.0, 1.0, 2.0]]) * sat)
    np.testing.assert_array_equal(top_k(got, 3), [[0, 2, 1]])


def test_top_k_returns_only_matching_pages():
    scores = np.array([[0.0, 2.0, -np.inf, 1.0]])
    np.testing.assert_array_equal(top_k(scores, 3), [[1, 3, -1]])


@pytest.fixture(scope="module")
def kb():
    return KnowledgeGenerator(hops=(1, 4))(2**31 + np.arange(3000))


def _first(kb, t, include):
    n = len(kb.query)
    s = bm25_scores(
        kb.terms[:, t],
        kb.doc_idf[:, t],
        kb.length[:, t],
        kb.valid[:, t],
        kb.values[:, t],
        np.broadcast_to(include, (n, 3)),
    )
    return top_k(s, 3)[:, 0]


@pytest.mark.parametrize("t", range(4))
def test_full_query_ranks_the_target_first(kb, t):
    assert (_first(kb, t, np.ones(3, bool)) == kb.target[:, t]).all()


@pytest.mark.parametrize("t", range(4))
@pytest.mark.parametrize("j", range(3))
def test_dropping_a_field_ranks_its_distractor_first(kb, t, j):
    # the rule is in the ranking: a shorter page matching the kept fields outscores the answer
    include = np.ones(3, bool)
    include[j] = False
    assert (_first(kb, t, include) == kb.distractor[:, t, j]).all()


def test_saturation_kept_in_the_base_is_the_one_bm25_computes(kb):
    args = [a[:, 1] for a in (kb.terms, kb.doc_idf, kb.length, kb.valid, kb.values)]
    use = np.ones((len(kb.query), 3), bool)
    got = bm25_scores(*args, use)
    assert np.array_equal(got, bm25_scores(*args, use, sat=kb.sat[:, 1]))


@pytest.mark.parametrize("k", [1, 3, 5])
def test_compiled_search_returns_the_reference_documents(kb, k):
    # every kind of query: the question's values, each field dropped, random values (mostly no
    # match: all -1), values of random documents (ties between equal pages), no field used
    from envs.species.task import search, search_reference

    rng = np.random.default_rng(k)
    n = len(kb.query)
    m = 6000
    rows = rng.integers(0, n, m)
    t = rng.integers(0, 4, m)
    doc = rng.integers(0, kb.num_docs, m)
    value = np.where((rng.random(m) < 0.5)[:, None], kb.values[rows, t], kb.terms[rows, t, doc])
    value = np.where(rng.random((m, 3)) < 0.1, rng.integers(-1, 50, (m, 3)), value)
    use = rng.random((m, 3)) < 0.7
    use[rng.random(m) < 0.05] = False
    got = search(kb, rows, t, value, use, k)
    want = search_reference(kb, rows, t, value, use, k)
    assert got.shape == want.shape == (m, k)
    assert np.array_equal(got, want)
    assert (got >= 0).any() and (got == -1).any()


def test_compiled_search_breaks_ties_as_the_reference(kb):
    # documents 1 and 2 made copies of document 0: equal scores, the lower index first
    from envs.species.task import search, search_reference

    tied = kb.take(np.arange(200))
    for d in (1, 2):
        for a in (tied.terms, tied.doc_idf, tied.sat, tied.valid):
            a[:, :, d] = a[:, :, 0]
    rows = np.repeat(np.arange(200), 4)
    t = np.tile(np.arange(4), 200)
    value = tied.terms[rows, t, 0]
    use = np.ones((len(rows), 3), bool)
    got = search(tied, rows, t, value, use, 3)
    assert np.array_equal(got, search_reference(tied, rows, t, value, use, 3))
    assert (got == [0, 1, 2]).all(axis=1).mean() > 0.5  # the tie decides most of them
