"""Batched mechanics of the invasive-species task, independent of the Gymnasium wrappers.

Two small MDPs share one knowledge base per episode:

* the **main agent** M works through the question's hops (``n_hops`` of person -> film ->
  species -> records, the last one always records). Each turn it either **delegates** one hop with
  a subset of that hop's three fields as the instruction's constraints, or **answers** with the zip
  codes of the latest records report. It sees, per hop, whether it has a report and whether the
  reported page matches the question on each field (it reads the report);
* the **sub-agent** S runs one short episode per instruction: **search** (its query keeps a subset
  of the instructed fields: the BM25 ranking decides which pages come first), **visit** one of the
  top ``top_k`` results (it then sees which instructed fields the page matches) and **report** the
  visited page. A call fails with probability ``fail_prob`` (its search tool errors and S can only
  report nothing), so M must retry.

All functions take and return arrays with a leading batch axis; row ``i`` of every sub-agent array
belongs to the main episode ``row[i]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from envs.species.ranking import bm25_scores, top_k
from envs.species.scoring import answer_score, expert_score
from envs.species.types import NUM_SLOTS, NUM_TYPES, RECORDS, KnowledgeBase

# main-agent action components: [kind, keep_0, keep_1, keep_2, copies]; kind 0 answers,
# kind 1 + t delegates index type t, kind 5 is reserved for malformed output. Flat mode: kind
# 1 + t opens a search session for type t, kind 5 (M_TOOL) uses a tool, kind 6 is malformed
M_ANSWER, M_DELEGATE, M_MALFORMED = 0, 1, 5
M_TOOL = 5
# sub-agent action components: [kind, use_0, use_1, use_2, rank]
S_SEARCH, S_VISIT, S_REPORT = 0, 1, 2
PENDING, REPORTED, FAILED = 0, 1, 2


@dataclass
class MainState:
    """Per-episode state of M (arrays (n, ...)). Hops are indexed by their index type ``t``
    (person, film, species, records); a question with ``h`` hops uses types ``4 - h .. 3``."""

    kb: KnowledgeBase
    report: np.ndarray
    """int64 (n, 4): document of the latest successful report for each type, -1 none."""
    status: np.ndarray
    """int64 (n, 4): PENDING (never asked), REPORTED (latest call reported), FAILED (it did not)."""
    attempts: np.ndarray
    """int64 (n, 4): calls made for each type."""
    hit: np.ndarray
    """bool (n,): some report of the episode was a planted distractor."""
    kept_sum: np.ndarray
    """float64 (n,): sum over the episode's instructions of the share of the hop's essential
    fields kept."""
    kept_count: np.ndarray
    """int64 (n,): instructions sent."""

    @classmethod
    def empty(cls, kb: KnowledgeBase) -> MainState:
        n = kb.query.shape[0]
        return cls(
            kb=kb,
            report=np.full((n, NUM_TYPES), -1, dtype=np.int64),
            status=np.zeros((n, NUM_TYPES), dtype=np.int64),
            attempts=np.zeros((n, NUM_TYPES), dtype=np.int64),
            hit=np.zeros(n, dtype=bool),
            kept_sum=np.zeros(n, dtype=np.float64),
            kept_count=np.zeros(n, dtype=np.int64),
        )

    def reset_rows(
        self, rows: np.ndarray, kb: KnowledgeBase, take: np.ndarray | None = None
    ) -> None:
        """Start new episodes in ``rows`` with the bases ``kb`` (batch of len(rows)), or, with
        ``take`` ``(len(rows),)``, with bases ``kb`` rows ``take`` (copied once, not twice)."""
        for key, value in kb.__dict__.items():
            getattr(self.kb, key)[rows] = value if take is None else value[take]
        self.report[rows] = -1
        self.status[rows] = PENDING
        self.attempts[rows] = 0
        self.hit[rows] = False
        self.kept_sum[rows] = 0.0
        self.kept_count[rows] = 0


def first_type(state: MainState, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
    """int64 (m,): index type of each question's first hop (``4 - n_hops``)."""
    return NUM_TYPES - state.kb.n_hops[rows]


def hop_exists(state: MainState) -> np.ndarray:
    """bool (n, 4): which index types the question asks for."""
    return np.arange(NUM_TYPES)[None, :] >= first_type(state)[:, None]


def question_values(state: MainState, rows: np.ndarray, t: np.ndarray) -> np.ndarray:
    """int64 (m, 3): the field values M can state for type ``t`` of episodes ``rows``: the two
    attributes from the question and the link (slot 0): stated in the question for the first
    hop, else the entity of the previous type's latest report (-1 while there is none)."""
    vals = state.kb.values[rows, t].copy()
    prev = state.report[rows, np.maximum(t - 1, 0)]
    vals[:, 0] = np.where(t == first_type(state, rows), vals[:, 0], prev)
    return vals


def report_match(state: MainState) -> np.ndarray:
    """bool (n, 4, 3): whether each type's latest report matches what M knows of the question,
    field by field (M reads the report). False where there is no report or no such hop."""
    n = state.report.shape[0]
    rows = np.repeat(np.arange(n), NUM_TYPES)
    t = np.tile(np.arange(NUM_TYPES), n)
    vals = question_values(state, rows, t)
    doc = state.report[rows, t]
    terms = state.kb.terms[rows, t, np.maximum(doc, 0)]
    ok = (doc >= 0) & hop_exists(state).reshape(-1)
    match = (terms == vals) & (vals >= 0) & ok[:, None]
    return match.reshape(n, NUM_TYPES, NUM_SLOTS)


def delegable(state: MainState) -> np.ndarray:
    """bool (n, 4): types M may delegate now (in the question, and the link is known)."""
    prev_ok = np.ones(state.report.shape, dtype=bool)
    prev_ok[:, 1:] = state.report[:, :-1] >= 0
    first = np.arange(NUM_TYPES)[None, :] == first_type(state)[:, None]
    return hop_exists(state) & (prev_ok | first)


def make_instructions(
    state: MainState, rows: np.ndarray, t: np.ndarray, keep: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The instructions M sends for types ``t``: (value int64 (m, 3), include bool (m, 3)).

    A field is stated when M keeps it and knows its value. Also records, per instruction, the
    share of the hop's three essential fields that it keeps, and counts the attempt."""
    value = question_values(state, rows, t)
    include = np.asarray(keep, dtype=bool) & (value >= 0)
    share = include.sum(axis=1) / NUM_SLOTS
    np.add.at(state.kept_sum, rows, share)  # in issue order, as a running sum would
    np.add.at(state.kept_count, rows, 1)
    np.add.at(state.attempts, (rows, t), 1)
    return value, include


def apply_reports(state: MainState, rows: np.ndarray, t: np.ndarray, doc: np.ndarray) -> None:
    """Record reports (doc -1: the call found nothing or failed), in issue order. Of several
    reports for one (episode, type) in the same turn, the first successful one counts."""
    state.status[rows, t] = FAILED
    is_d = (state.kb.distractor[rows, t] == doc[:, None]).any(axis=1) & (doc >= 0)
    state.hit[rows[is_d]] = True
    ok = np.flatnonzero(doc >= 0)
    if ok.size:
        _, first = np.unique(rows[ok] * NUM_TYPES + t[ok], return_index=True)
        sel = ok[first]
        state.report[rows[sel], t[sel]] = doc[sel]
        state.status[rows[sel], t[sel]] = REPORTED


def final_answer(state: MainState, rows: np.ndarray) -> np.ndarray:
    """int64 (m, zips): zip codes of the latest records report (-1 padding; none: empty set)."""
    doc = state.report[rows, RECORDS]
    z = state.kb.zips[rows, np.maximum(doc, 0)]
    return np.where((doc >= 0)[:, None], z, -1)


def correctness(state: MainState, rows: np.ndarray, mode: str) -> np.ndarray:
    """float64 (m,) c_M of answering now."""
    return answer_score(final_answer(state, rows), state.kb.answer[rows], mode)


def distractor_hit(state: MainState, rows: np.ndarray) -> np.ndarray:
    """int64 (m,): 1 if some report of the episode was a planted distractor of its index."""
    return state.hit[rows].astype(np.int64)


def search(
    kb: KnowledgeBase, rows: np.ndarray, t: np.ndarray, value: np.ndarray, use: np.ndarray, k: int
) -> np.ndarray:
    """int64 (m, k): the top-k documents of index ``t`` of episodes ``rows`` for queries with
    field values ``value`` (m, 3) restricted to fields ``use`` (m, 3) (-1: no more results):
    BM25 (:mod:`envs.species.ranking`), run compiled (:mod:`envs.species.ranking_jit`, the same
    documents as :func:`search_reference`)."""
    from envs.species.ranking_jit import search_kb  # numba is imported on the first search

    return search_kb(kb, rows, t, value, use, k)


def search_reference(
    kb: KnowledgeBase, rows: np.ndarray, t: np.ndarray, value: np.ndarray, use: np.ndarray, k: int
) -> np.ndarray:
    """:func:`search` in numpy (the reference the compiled kernel is tested against)."""
    sc = bm25_scores(
        kb.terms[rows, t],
        kb.doc_idf[rows, t],
        kb.length[rows, t],
        kb.valid[rows, t],
        value,
        use,
        sat=kb.sat[rows, t],
    )
    return top_k(sc, k)


def report_expert(
    kb: KnowledgeBase,
    rows: np.ndarray,
    t: np.ndarray,
    value: np.ndarray,
    include: np.ndarray,
    doc: np.ndarray,
) -> np.ndarray:
    """float64 (m,) e_S of reporting documents ``doc`` (-1: nothing) for instructions
    (t, value, include) (see :mod:`envs.species.scoring`)."""
    terms = kb.terms[rows, t, np.maximum(doc, 0)]
    return expert_score(terms, value, include, doc >= 0)
