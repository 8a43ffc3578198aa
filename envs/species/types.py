"""Data types of the invasive-species task: the knowledge base and its index layout.

Every array has a leading batch axis ``n`` (one row per episode/query), so one code path serves the
single env (``n = 1``) and the vector env. Dimension names: ``n`` episodes, ``4`` index types
(:data:`INDEX_NAMES`), ``docs`` documents per index (padded to the records index size),
``3`` constraint slots per document, ``zips`` zip codes per records document (padded with -1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PERSON, FILM, SPECIES, RECORDS = 0, 1, 2, 3
"""Index types, in hop order: a question with ``h`` hops asks for the last ``h`` of them."""

INDEX_NAMES: tuple[str, ...] = ("person", "film", "species", "records")
"""Name of each index type (the sub-agent's ``intent``)."""

SLOT_NAMES: tuple[tuple[str, str, str], ...] = (
    ("country", "award", "born"),
    ("director", "decade", "genre"),
    ("film", "cause", "group"),
    ("species", "agency", "period"),
)
"""The three structured fields (constraint slots) of each index type. Slot 0 is the link to the
previous hop's entity (the film's director is a person, the species' film is a film, the records'
species is a species); slots 1 and 2 are attributes stated in the question."""

NUM_SLOTS = 3
NUM_TYPES = 4


@dataclass(frozen=True)
class KnowledgeBase:
    """A batch of generated knowledge bases (one per query id), as numpy arrays.

    Documents of the entity indices (person, film, species) are the entities themselves (document
    ``d`` of index ``t`` describes entity ``d``); the records index holds one document per
    (species, agency, period) with ``d = (species * n_agencies + agency) * 2 + period``.
    """

    query: np.ndarray
    """int64 (n,): the query ids the bases were generated from."""
    terms: np.ndarray
    """int64 (n, 4, docs, 3): value of each structured field of each document (-1: padding)."""
    doc_idf: np.ndarray
    """float64 (n, 4, docs, 3): BM25 idf of each document's field value within its index."""
    length: np.ndarray
    """float64 (n, 4, docs): document length in words (BM25 length normalisation)."""
    valid: np.ndarray
    """bool (n, 4, docs): True for real documents, False for padding."""
    sat: np.ndarray
    """float64 (n, 4, docs): BM25's length factor of each document in its index
    (:func:`envs.species.ranking.saturation` of ``length`` and ``valid``, kept for the searches)."""
    zips: np.ndarray
    """int64 (n, docs, zips): zip codes listed by each records document (-1: padding)."""
    years: np.ndarray
    """int64 (n, docs, zips): year of each listed record (-1: padding)."""
    target: np.ndarray
    """int64 (n, 4): index of the true document (the answer) of each index type."""
    distractor: np.ndarray
    """int64 (n, 4, 3): the planted distractor of each index type and slot: it matches the target
    on the two other slots, differs on this one, and is a shorter (more focused) page."""
    values: np.ndarray
    """int64 (n, 4, 3): the question's value of each slot (slot 0 is the link, i.e. the previous
    index's target entity; for the first hop of a question it is stated in the question)."""
    n_hops: np.ndarray
    """int64 (n,): hops of each question (1..4): it asks for the last ``n_hops`` index types."""
    cutoff: np.ndarray
    """int64 (n,): the cut-off year (period 0 = records before it, period 1 = from it on)."""
    entity_names: np.ndarray
    """int64 (n, 4, docs): phrase id (into the lists of :mod:`envs.species.names`) of each
    entity-index document's entity (-1: records index and padding). Attribute values (slots 1, 2,
    and slot 0 of the person index) are phrase ids themselves."""
    answer: np.ndarray
    """int64 (n, zips): the answer, the zip codes of the target records document (-1: padding)."""

    @property
    def num_docs(self) -> int:
        """Padded number of documents per index."""
        return int(self.terms.shape[2])

    def take(self, rows: np.ndarray) -> KnowledgeBase:
        """Rows ``rows`` of every array (a sub-batch)."""
        return KnowledgeBase(**{k: v[rows] for k, v in self.__dict__.items()})

    def hop_types(self) -> np.ndarray:
        """int64 (n, 4): index type of hop ``h`` (hops in order), -1 past the last hop."""
        h = np.arange(NUM_TYPES)[None, :]
        t = NUM_TYPES - self.n_hops[:, None] + h
        return np.where(h < self.n_hops[:, None], t, -1)
