"""Scores of the invasive-species task: the final answer (c_M) and a report (e_S).

* **Answer** (a set of zip codes): ``exact`` (default) gives 1 iff the answered set equals the
  true set; ``partial`` gives the Jaccard overlap |A & T| / |A | T| (an empty answer scores 0).
  Success (c_M == 1) is the same under both.
* **Report** (expert score e_S): the share of the fields *in the sub-agent's instruction* that the
  reported document matches; 0 if it reported no document; 1 for an instruction with no field (it
  asked for nothing in particular). It scores the sub-agent's own subtask, not the team's answer: a
  sub-agent that faithfully follows a vague instruction to a distractor gets e_S = 1.
"""

from __future__ import annotations

import numpy as np

ANSWER_MODES = ("exact", "partial")


def answer_score(answer: np.ndarray, truth: np.ndarray, mode: str = "exact") -> np.ndarray:
    """c_M of each answer.

    Args:
        answer: int64 (n, zips) answered zip codes, -1 padding (no duplicates).
        truth: int64 (n, zips) true zip codes, -1 padding (no duplicates).
        mode: ``"exact"`` or ``"partial"``.

    Returns:
        float64 (n,) in [0, 1].
    """
    if mode not in ANSWER_MODES:
        raise ValueError(f"answer_scoring={mode!r}: expected one of {ANSWER_MODES}")
    a_ok, t_ok = answer >= 0, truth >= 0
    hit = (answer[:, :, None] == truth[:, None, :]) & a_ok[:, :, None] & t_ok[:, None, :]
    inter = hit.any(axis=2).sum(axis=1)
    union = a_ok.sum(1) + t_ok.sum(1) - inter
    if mode == "exact":
        return ((inter == union) & (union > 0)).astype(np.float64)
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def expert_score(
    doc_terms: np.ndarray, value: np.ndarray, include: np.ndarray, reported: np.ndarray
) -> np.ndarray:
    """e_S of each report.

    Args:
        doc_terms: int64 (n, 3) field values of the reported document (any value if none).
        value: int64 (n, 3) the instruction's field values.
        include: bool (n, 3) the fields the instruction states.
        reported: bool (n,) whether a document was reported.

    Returns:
        float64 (n,) in [0, 1].
    """
    include = np.asarray(include, dtype=bool)
    k = include.sum(axis=1)
    hit = ((doc_terms == value) & include).sum(axis=1)
    share = np.where(k > 0, hit / np.maximum(k, 1), 1.0)
    return np.where(reported, share, 0.0)
