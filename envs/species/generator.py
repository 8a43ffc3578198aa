"""Generate invasive-species knowledge bases: a pure, vectorized function of the query ids.

A knowledge base has four indices of documents, one per hop type (person -> film -> species ->
records, see :mod:`envs.species.types`). Each entity index (persons, films, species) holds
``n_species`` entities described by three structured fields; the records index holds one document
per (species, agency, period), listing the zip codes (and years) where that agency recorded the
species as nonnative before / from the question's cut-off year.

The question asks for the target of the last ``n_hops`` indices in turn, each hop constrained by
its three fields: the link to the previous hop's answer plus two attributes stated in the
question (e.g. species: *appeared in film F*, *released by pet owners*, *a fish*; records:
*that species*, *agency A*, *before 2020*). For every index and field the generator plants a
**distractor** that equals the target on the two other fields, differs on this one, and is a
shorter, more focused page (so BM25 length normalisation ranks it first whenever the query lacks
the field that tells them apart):

* species: same film but another cause; same cause but another film; same film and cause, other
  group;
* records: the same species and agency after the cut-off year; another agency; another species.

All other documents (fillers) differ from the target on at least two fields and are longer pages,
so the full query ranks the target first (checked in ``tests/envs/species/test_ranking.py``).

Randomness is counter-based (splitmix64 of the query id and a draw counter), so generating a batch
of N queries is a handful of numpy calls and the base of query q never depends on the batch.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from envs.species import names
from envs.species.ranking import saturation
from envs.species.types import FILM, NUM_SLOTS, NUM_TYPES, PERSON, RECORDS, SPECIES, KnowledgeBase

MAX_ZIPS = 4
"""Zip codes listed per records document (1 of its own + up to 3 shared with the species)."""
_POOL = 4
"""Zip codes per species that its records documents draw from (so documents overlap)."""
_U64 = np.uint64


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on a uint64 array (wrapping arithmetic)."""
    x = x + _U64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> _U64(27))) * _U64(0x94D049BB133111EB)
    return x ^ (x >> _U64(31))


class _Draws:
    """Counter-based uniform draws keyed by the query ids: row i depends only on query[i]."""

    def __init__(self, query: np.ndarray) -> None:
        self._key = _mix(np.asarray(query, dtype=np.int64).astype(_U64))
        self._counter = 0

    def uniform(self, *shape: int) -> np.ndarray:
        """float64 (n, *shape) in [0, 1)."""
        self._counter += 1
        size = int(np.prod(shape, dtype=np.int64))
        ctr = np.arange(size, dtype=_U64) + _U64(self._counter) * _U64(1 << 32)
        x = _mix(self._key[:, None] ^ _mix(ctr)[None, :])
        return ((x >> _U64(11)).astype(np.float64) * 2.0**-53).reshape(-1, *shape)

    def integers(self, high, *shape: int) -> np.ndarray:
        """int64 (n, *shape) uniform in [0, high) (``high`` broadcasts against that shape)."""
        return np.floor(self.uniform(*shape) * high).astype(np.int64)

    def permutation(self, size: int) -> np.ndarray:
        """int64 (n, size): one random permutation per row."""
        return np.argsort(self.uniform(size), axis=1, kind="stable")


def _other(value: np.ndarray, r: np.ndarray, domain) -> np.ndarray:
    """A value != ``value`` drawn from [0, domain) using random ints ``r`` (any shape)."""
    return (value + 1 + r % (domain - 1)) % domain


CACHE_ROWS = 2048
"""bases kept in the module's cache (rows of recent batches, about 22 KB each): a batch of
query ids asked for again (each evaluation's held-out queries, a benchmark's query pool) is not
generated again"""
_CACHE: OrderedDict[tuple, KnowledgeBase] = OrderedDict()


@dataclass(frozen=True)
class KnowledgeGenerator:
    """Builds :class:`KnowledgeBase` batches from query ids (see the module docstring).

    Args:
        n_species: entities per entity index (species, films, persons), >= 4 (the target and its
            three distractors) and <= 24 (the word lists).
        n_agencies: agencies keeping records, 2..5 (the records distractor needs another one).
        hops: (min, max) hops per question, 1 <= min <= max <= 4; drawn uniformly per query.
        short_len: (low, high) length in words of distractor pages (focused pages rank higher).
        target_len: (low, high) length of target pages, with ``short_len[1] < low``.
        long_len: (low, high) length of filler pages, with ``short_len[1] < low``.
    """

    n_species: int = 10
    n_agencies: int = 3
    hops: tuple[int, int] = (2, 2)
    short_len: tuple[float, float] = (80.0, 95.0)
    target_len: tuple[float, float] = (110.0, 120.0)
    long_len: tuple[float, float] = (110.0, 200.0)

    def __post_init__(self) -> None:
        if not 4 <= self.n_species <= len(names.FILMS):
            raise ValueError(
                f"n_species={self.n_species!r}: need >= 4 (the answer and one distractor per "
                f"field: 3) and <= {len(names.FILMS)} (named entities)"
            )
        if not 2 <= self.n_agencies <= len(names.AGENCIES):
            raise ValueError(
                f"n_agencies={self.n_agencies!r}: need 2..{len(names.AGENCIES)} (the records "
                "distractor needs another agency)"
            )
        lo, hi = self.hops
        if not (1 <= lo <= hi <= NUM_TYPES):
            raise ValueError(f"hops={self.hops!r}: need (min, max) with 1 <= min <= max <= 4")
        for key in ("target_len", "long_len"):
            lo_, hi_ = getattr(self, key)
            if not (0 < self.short_len[0] <= self.short_len[1] < lo_ <= hi_):
                raise ValueError(
                    f"{key}={getattr(self, key)!r}, short_len={self.short_len!r}: need "
                    "0 < short low <= short high < low <= high"
                )

    @property
    def num_docs(self) -> int:
        """Padded documents per index (the records index: species x agencies x 2 periods)."""
        return self.n_species * self.n_agencies * 2

    def domains(self) -> np.ndarray:
        """int64 (4, 3): number of values of each (index type, slot)."""
        e = self.n_species
        return np.array(
            [
                [len(names.COUNTRIES), len(names.AWARDS), len(names.BORN)],
                [e, len(names.DECADES), len(names.GENRES)],
                [e, len(names.CAUSES), len(names.GROUPS)],
                [e, self.n_agencies, len(names.PERIODS)],
            ],
            dtype=np.int64,
        )

    def __call__(self, query: np.ndarray) -> KnowledgeBase:
        """The bases of ``query`` (int64 (n,), each >= 0): generated, or the cached batch when
        the same query ids were asked for recently (:data:`CACHE_ROWS`; generation is a pure
        function of the ids). The arrays are read-only (shared with the cache)."""
        query = np.atleast_1d(np.asarray(query, dtype=np.int64))
        key = (self, query.tobytes())
        kb = _CACHE.get(key)
        if kb is not None:
            _CACHE.move_to_end(key)
            return kb
        kb = self.generate(query)
        if len(query) <= CACHE_ROWS:
            for a in kb.__dict__.values():
                a.setflags(write=False)
            _CACHE[key] = kb
            while sum(len(v.query) for v in _CACHE.values()) > CACHE_ROWS:
                _CACHE.popitem(last=False)
        return kb

    def generate(self, query: np.ndarray) -> KnowledgeBase:
        """Generate the bases of ``query`` (int64 (n,), each >= 0), uncached."""
        query = np.atleast_1d(np.asarray(query, dtype=np.int64))
        n, e, docs = query.shape[0], self.n_species, self.num_docs
        dom = self.domains()
        rnd = _Draws(query)
        rows = np.arange(n)

        terms = np.full((n, NUM_TYPES, docs, NUM_SLOTS), -1, dtype=np.int64)
        length = np.ones((n, NUM_TYPES, docs))
        valid = np.zeros((n, NUM_TYPES, docs), dtype=bool)
        target = np.zeros((n, NUM_TYPES), dtype=np.int64)
        distractor = np.zeros((n, NUM_TYPES, NUM_SLOTS), dtype=np.int64)
        values = np.zeros((n, NUM_TYPES, NUM_SLOTS), dtype=np.int64)

        # ---- entity indices (person -> film -> species), each linked to the previous target
        link = rnd.integers(dom[PERSON, 0], 1)[:, 0]
        for t in (PERSON, FILM, SPECIES):
            q = np.stack([link, *(rnd.integers(dom[t, j], 1)[:, 0] for j in (1, 2))], axis=1)
            perm = rnd.permutation(e)  # perm[:, 0] target, perm[:, 1:4] distractors
            free = rnd.integers(NUM_SLOTS, e)  # the one field a filler may share with the target
            r = rnd.integers(1 << 30, e, NUM_SLOTS)
            other = _other(q[:, None, :], r, dom[t][None, None, :])  # (n, e, 3)
            same_or_not = rnd.integers(dom[t][None, :], e, NUM_SLOTS)
            is_free = np.arange(NUM_SLOTS)[None, None, :] == free[:, :, None]
            rank_vals = np.where(is_free, same_or_not, other)  # by rank in perm: fillers
            rank_vals[:, 0] = q
            for j in range(NUM_SLOTS):  # rank 1 + j: distractor of slot j
                rank_vals[:, 1 + j] = q
                rank_vals[:, 1 + j, j] = other[:, 1 + j, j]
            terms[rows[:, None], t, perm] = rank_vals
            lens = self._lengths(rnd, e)
            length[rows[:, None], t, perm] = lens
            valid[:, t, :e] = True
            target[:, t] = perm[:, 0]
            distractor[:, t] = perm[:, 1:4]
            values[:, t] = q
            link = perm[:, 0]

        # ---- records index: one document per (species, agency, period)
        s_star = link
        a_star = rnd.integers(self.n_agencies, 1)[:, 0]
        values[:, RECORDS] = np.stack([s_star, a_star, np.zeros(n, dtype=np.int64)], axis=1)
        d = np.arange(docs)
        terms[:, RECORDS] = np.stack(
            [d // (2 * self.n_agencies), (d // 2) % self.n_agencies, d % 2], axis=1
        )[None]
        valid[:, RECORDS] = True
        r = rnd.integers(1 << 30, 2)

        def doc(s, a, p):
            return (s * self.n_agencies + a) * 2 + p

        target[:, RECORDS] = doc(s_star, a_star, 0)
        distractor[:, RECORDS, 0] = doc(_other(s_star, r[:, 0], e), a_star, 0)
        distractor[:, RECORDS, 1] = doc(s_star, _other(a_star, r[:, 1], self.n_agencies), 0)
        distractor[:, RECORDS, 2] = doc(s_star, a_star, 1)
        lens = self._lengths(rnd, 4)  # target long, the three distractors short
        length[:, RECORDS] = self._long(rnd, docs)
        length[rows, RECORDS, target[:, RECORDS]] = lens[:, 0]
        for j in range(NUM_SLOTS):
            length[rows, RECORDS, distractor[:, RECORDS, j]] = lens[:, 1 + j]

        # ---- zip codes and years of the records documents
        cutoff = np.asarray(names.CUTOFFS)[rnd.integers(len(names.CUTOFFS), 1)[:, 0]]
        base = rnd.integers(89999, 1)
        pool_k = docs + (terms[:, RECORDS, :, 0:1] * _POOL) + rnd.permutation(_POOL)[:, None, :]
        own_k = np.broadcast_to(d[None, :, None], (n, docs, 1))
        k = np.concatenate([own_k, pool_k[:, :, : MAX_ZIPS - 1]], axis=2)
        zips = 10000 + (base[:, :, None] + k * 797) % 89999
        count = 2 + rnd.integers(MAX_ZIPS - 1, docs)  # 2..MAX_ZIPS zip codes per document
        zips = np.where(np.arange(MAX_ZIPS)[None, None, :] < count[:, :, None], zips, -1)
        period = terms[:, RECORDS, :, 2:3]
        span = np.where(period == 0, 15, 2025 - cutoff[:, None, None])
        start = np.where(period == 0, cutoff[:, None, None] - 15, cutoff[:, None, None])
        years = start + rnd.integers(span, docs, MAX_ZIPS)
        years = np.where(zips >= 0, years, -1)

        # ---- idf of every document field within its index
        doc_idf = np.zeros(terms.shape)
        vmax = int(dom.max())
        n_valid = valid.sum(axis=2)  # (n, 4)
        for t in range(NUM_TYPES):
            for j in range(NUM_SLOTS):
                v = terms[:, t, :, j]
                key = rows[:, None] * vmax + np.where(valid[:, t], v, 0)
                df = np.bincount(key[valid[:, t]], minlength=n * vmax).reshape(n, vmax)
                dfd = np.take_along_axis(df, np.where(valid[:, t], v, 0), axis=1)
                nd = n_valid[:, t, None]
                idf = np.log((nd - dfd + 0.5) / (dfd + 0.5) + 1.0)
                doc_idf[:, t, :, j] = np.where(valid[:, t], idf, 0.0)

        # ---- names of the entities
        entity_names = np.full((n, NUM_TYPES, docs), -1, dtype=np.int64)
        for t, lst in ((PERSON, names.PERSONS), (FILM, names.FILMS), (SPECIES, names.SPECIES)):
            entity_names[:, t, :e] = rnd.permutation(len(lst))[:, :e]

        lo, hi = self.hops
        n_hops = lo + rnd.integers(hi - lo + 1, 1)[:, 0]
        answer = zips[rows, target[:, RECORDS]]
        return KnowledgeBase(
            query=query,
            terms=terms,
            doc_idf=doc_idf,
            length=length,
            valid=valid,
            sat=saturation(length, valid),
            zips=zips,
            years=years,
            target=target,
            distractor=distractor,
            values=values,
            n_hops=n_hops,
            cutoff=cutoff,
            entity_names=entity_names,
            answer=answer,
        )

    def _long(self, rnd: _Draws, size: int) -> np.ndarray:
        lo, hi = self.long_len
        return lo + (hi - lo) * rnd.uniform(size)

    def _lengths(self, rnd: _Draws, size: int) -> np.ndarray:
        """float64 (n, size) page lengths by rank: rank 0 target (long), 1..3 distractors
        (short, i.e. focused pages), the rest fillers (long)."""
        out = self._long(rnd, size)
        lo, hi = self.target_len
        out[:, 0] = lo + (hi - lo) * rnd.uniform(1)[:, 0]
        lo, hi = self.short_len
        out[:, 1:4] = lo + (hi - lo) * rnd.uniform(3)
        return out
