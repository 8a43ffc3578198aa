"""Compiled (numba) search: :func:`envs.species.ranking.bm25_scores` then
:func:`~envs.species.ranking.top_k`, gathered from the knowledge base, in one loop per query.

The numpy functions stay the reference; ``tests/envs/species/test_ranking.py`` checks that this
kernel returns the same documents on thousands of searches, ties included. The arithmetic is
numpy's, term by term: a document's score is the sum, in slot order, of ``[term == value and
used] * idf`` (numpy's sum over a length-3 axis adds in order), times its length factor
``KnowledgeBase.sat``; padding scores -inf. The top k are taken best first with ties to the
lower index (numpy's stable argsort of ``-score``), and a slot whose score is not above 0 is -1.
The first call in a process loads the compiled code from numba's cache (``__pycache__``) or
compiles it (about a second).
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["search_kb"]


@njit(cache=True)
def _search(terms, doc_idf, sat, valid, rows, t, value, use, k, out):  # pragma: no cover - jit
    n_docs = terms.shape[2]
    n_slots = terms.shape[3]
    score = np.empty(n_docs, dtype=np.float64)
    taken = np.empty(n_docs, dtype=np.bool_)
    for i in range(rows.shape[0]):
        r, ti = rows[i], t[i]
        for d in range(n_docs):
            taken[d] = False
            if not valid[r, ti, d]:
                score[d] = -np.inf
                continue
            s = 0.0
            for j in range(n_slots):
                hit = 1.0 if (use[i, j] and terms[r, ti, d, j] == value[i, j]) else 0.0
                s += hit * doc_idf[r, ti, d, j]
            score[d] = s * sat[r, ti, d]
        for slot in range(out.shape[1]):
            best = -1
            for d in range(n_docs):  # the best not taken; ties: the lower index
                if not taken[d] and (best < 0 or score[d] > score[best]):
                    best = d
            taken[best] = True
            out[i, slot] = best if score[best] > 0.0 else -1


def search_kb(
    kb, rows: np.ndarray, t: np.ndarray, value: np.ndarray, use: np.ndarray, k: int
) -> np.ndarray:
    """int64 ``(m, min(k, docs))``: :func:`envs.species.task.search` of ``kb`` (a
    :class:`~envs.species.types.KnowledgeBase`) for episodes ``rows`` ``(m,)``, index types ``t``
    ``(m,)``, query values ``value`` ``(m, 3)`` restricted to the fields ``use`` ``(m, 3)``."""
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    out = np.empty((len(rows), min(int(k), kb.num_docs)), dtype=np.int64)
    _search(
        kb.terms,
        kb.doc_idf,
        kb.sat,
        kb.valid,
        rows,
        np.ascontiguousarray(t, dtype=np.int64),
        np.ascontiguousarray(value, dtype=np.int64),
        np.ascontiguousarray(use, dtype=np.bool_),
        int(k),
        out,
    )
    return out
