"""Rules of the answer and report scores (envs/species/scoring.py)."""

import numpy as np
import pytest

from envs.species.scoring import answer_score, expert_score

TRUTH = np.array([[10001, 10002, 10003, -1]] * 4)
ANSWERS = np.array(
    [
        [10003, 10001, 10002, -1],  # same set, other order
        [10001, 10002, -1, -1],  # subset: 2 of 3
        [10001, 20000, -1, -1],  # 1 shared, union 4
        [-1, -1, -1, -1],  # empty
    ]
)


def test_exact():
    np.testing.assert_array_equal(answer_score(ANSWERS, TRUTH, "exact"), [1, 0, 0, 0])


def test_partial_is_jaccard():
    # |A & T| / |A | T|: 3/3, 2/3, 1/4, 0
    np.testing.assert_allclose(answer_score(ANSWERS, TRUTH, "partial"), [1, 2 / 3, 1 / 4, 0])


def test_unknown_mode():
    with pytest.raises(ValueError, match="exact"):
        answer_score(ANSWERS, TRUTH, "fuzzy")


def test_expert_score_is_share_of_instructed_fields():
    doc = np.array([[1, 2, 3], [1, 9, 3], [1, 9, 9], [0, 0, 0], [5, 5, 5]])
    value = np.array([[1, 2, 3]] * 5)
    include = np.array([[1, 1, 1], [1, 1, 1], [1, 0, 1], [1, 1, 1], [0, 0, 0]], bool)
    reported = np.array([1, 1, 1, 0, 1], bool)
    # 3/3; 2/3; instruction without field 1: 1/2; nothing reported: 0; no field asked: 1
    np.testing.assert_allclose(expert_score(doc, value, include, reported), [1, 2 / 3, 1 / 2, 0, 1])
