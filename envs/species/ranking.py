"""BM25 ranking over structured documents, vectorized over a batch of searches.

A document has three structured fields (see :mod:`envs.species.types`); a query is a subset of the
instruction's field values (``include`` bits). This is BM25 restricted to field-qualified terms
("species:red lionfish", "agency:USGS NAS"), each field holding one term (tf = 1)::

    score(d, q) = sum_j include_j * [terms[d, j] == value_j] * idf_j(value_j) * s(len_d)
    s(len) = (k1 + 1) / (1 + k1 * (1 - b + b * len / avg_len))
    idf(v) = log((N - df(v) + 0.5) / (df(v) + 0.5) + 1)

Nothing in the ranking knows which document is the answer: a query that keeps every field ranks
the only document matching all of them first; a query that drops one lets a shorter page that
matches the remaining fields (the generator's distractors) win through length normalisation.
"""

from __future__ import annotations

import numpy as np

K1 = 1.2
"""BM25 term-frequency saturation."""
B = 0.75
"""BM25 length normalisation strength."""


def bm25_scores(
    terms: np.ndarray,
    doc_idf: np.ndarray,
    length: np.ndarray,
    valid: np.ndarray,
    value: np.ndarray,
    include: np.ndarray,
    *,
    k1: float = K1,
    b: float = B,
    sat: np.ndarray | None = None,
) -> np.ndarray:
    """BM25 score of every document for every query.

    Args:
        terms: int64 (n, docs, 3) field values of the documents searched by each query.
        doc_idf: float64 (n, docs, 3) idf of each document's field value in its index.
        length: float64 (n, docs) document lengths.
        valid: bool (n, docs) real documents (padding scores -inf).
        value: int64 (n, 3) the query's field values.
        include: bool/int (n, 3) which fields the query uses.
        sat: float64 (n, docs) :func:`saturation` of ``length`` and ``valid`` if already known
            (a knowledge base keeps it: ``KnowledgeBase.sat``); None computes it.

    Returns:
        float64 (n, docs) scores (0 where no query term matches, -inf for padding).
    """
    sat = saturation(length, valid, k1=k1, b=b) if sat is None else sat
    match = (terms == value[:, None, :]) & (np.asarray(include, dtype=bool)[:, None, :])
    score = (match * doc_idf).sum(axis=2) * sat
    return np.where(valid, score, -np.inf)


def saturation(
    length: np.ndarray, valid: np.ndarray, *, k1: float = K1, b: float = B
) -> np.ndarray:
    """float64 ``length.shape``: the length factor ``s(len)`` of each document, with ``avg_len``
    the mean length of the valid documents of its index (the last axis; at least 1 counted)."""
    avg = (length * valid).sum(axis=-1, keepdims=True) / np.maximum(valid.sum(-1, keepdims=True), 1)
    return (k1 + 1.0) / (1.0 + k1 * (1.0 - b + b * length / avg))


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """int64 (n, k): indices of the k best documents, best first (ties: lower index first);
    -1 where fewer than k documents score above 0 (a search returns only matching pages)."""
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    best = np.take_along_axis(scores, order, axis=1)
    return np.where(best > 0.0, order, -1)
