"""Rules of the knowledge-base generator (envs/species/generator.py)."""

import numpy as np
import pytest

from envs.species.generator import MAX_ZIPS, KnowledgeGenerator
from envs.species.types import RECORDS

QUERIES = np.concatenate([np.arange(300), 2**31 + np.arange(300)])


@pytest.fixture(scope="module")
def kb():
    return KnowledgeGenerator(hops=(1, 4))(QUERIES)


def test_pure_function_of_query_and_batch_independent(kb):
    # the base of query q is the same alone, in another batch, or generated twice
    gen = KnowledgeGenerator(hops=(1, 4))
    for i in (0, 7, 450):
        one = gen(QUERIES[i : i + 1])
        for key, value in one.__dict__.items():
            np.testing.assert_array_equal(value[0], getattr(kb, key)[i], err_msg=key)
    other = gen(QUERIES[::-1])
    np.testing.assert_array_equal(other.terms[::-1], kb.terms)


def test_different_queries_differ(kb):
    flat = kb.terms.reshape(len(QUERIES), -1)
    assert len(np.unique(flat, axis=0)) == len(QUERIES)


def test_target_is_the_only_document_matching_every_field(kb):
    full = (kb.terms == kb.values[:, :, None, :]).all(axis=3) & kb.valid  # (n, 4, docs)
    assert (full.sum(axis=2) == 1).all()
    got = np.take_along_axis(full, kb.target[:, :, None], axis=2)
    assert got.all()


def test_distractor_j_differs_exactly_on_field_j(kb):
    rows = np.arange(len(QUERIES))[:, None, None]
    types = np.arange(4)[None, :, None]
    d_terms = kb.terms[rows, types, kb.distractor]  # (n, 4, 3 distractors, 3 fields)
    differs = d_terms != kb.values[:, :, None, :]
    np.testing.assert_array_equal(differs, np.broadcast_to(np.eye(3, dtype=bool), differs.shape))


def test_chain_links_each_index_to_the_previous_target(kb):
    # the film's director is the target person, the species' film the target film, ...
    np.testing.assert_array_equal(kb.values[:, 1:, 0], kb.target[:, :3] % kb.num_docs)
    np.testing.assert_array_equal(kb.values[:, RECORDS, 2], 0)  # period 0 = before cut-off


def test_records_zips_and_years(kb):
    count = (kb.zips >= 0).sum(axis=2)
    assert ((count >= 2) & (count <= MAX_ZIPS)).all()
    period = kb.terms[:, RECORDS, :, 2]
    ok = kb.zips >= 0
    before = kb.years < kb.cutoff[:, None, None]
    assert (before[ok & (period[:, :, None] == 0)]).all()
    assert (~before[ok & (period[:, :, None] == 1)]).all()
    assert ((kb.zips[ok] >= 10000) & (kb.zips[ok] <= 99999)).all()
    # every document lists a zip code of its own, so no two documents list the same set
    srt = np.sort(kb.zips, axis=2).reshape(-1, MAX_ZIPS)
    per_query = srt.reshape(len(QUERIES), -1, MAX_ZIPS)
    for i in range(0, len(QUERIES), 50):
        assert len(np.unique(per_query[i], axis=0)) == kb.num_docs


def test_hops_in_range_and_idf_finite(kb):
    assert set(np.unique(kb.n_hops)) == {1, 2, 3, 4}
    assert np.isfinite(kb.doc_idf).all() and (kb.doc_idf[kb.valid] > 0).all()


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"n_species": 3}, "n_species"),
        ({"n_agencies": 1}, "n_agencies"),
        ({"hops": (0, 2)}, "hops"),
        ({"hops": (3, 2)}, "hops"),
        ({"long_len": (90.0, 200.0)}, "long_len"),
    ],
)
def test_impossible_config_names_the_key(kwargs, key):
    with pytest.raises(ValueError, match=key):
        KnowledgeGenerator(**kwargs)
