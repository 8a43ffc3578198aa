"""Record types returned in ``info`` at the end of an episode, and the columnar store they are
views of (:class:`SubRecords`: one block of arrays per role per main step)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass
class SubTrajectory:
    """One sub-agent episode (one delegation) of a main episode.

    ``T`` is the number of sub-agent steps taken (>= 1).
    """

    role: str
    """the specialist role that ran it (e.g. "sub", "math")"""
    invocation: int
    """0-based index of this call among the episode's calls to the same role, in issue order"""
    observations: dict[str, np.ndarray]
    """each key ``(T, ...)``: what the sub-agent saw before each of its actions"""
    actions: np.ndarray
    """``(T, n_comp)`` int64 actions taken"""
    logp: np.ndarray
    """``(T,)`` float behaviour log-probs as returned by the policy"""
    format_ok: int
    """f_S in {0, 1}: 0 if any action was masked (malformed) or no report was produced"""
    expert: float
    """e_S in [0, 1]: the expert score of the sub-agent's own subtask"""
    finish_order: int = 0
    """order in which the episode's sub-episodes finished (simulated time), 0-based"""
    instruction: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    """the structured instruction the main agent sent, ``(n_fields,)`` int64"""
    duration: float = 0.0
    """simulated seconds the sub-episode took"""
    turn: int = 0
    """main-agent turn (0-based) that issued it"""
    handle: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    """``(T,)`` int64 the policy's own record id per step, when it returned one (else -1)"""


@dataclass
class SubBlock:
    """The sub-episodes of one role run together in one main step (``m`` rows, owners sorted
    ascending, ``S`` the role's step cap): what :class:`SubTrajectory` objects are views of."""

    role: str
    owner: np.ndarray
    """``(m,)`` int64 main episode of each row"""
    invocation: np.ndarray
    """``(m,)`` int64 call index among the owner's calls to ``role``"""
    lengths: np.ndarray
    """``(m,)`` int64 steps taken (T >= 1)"""
    observations: dict[str, np.ndarray]
    """each ``(m, S, ...)``; row j's steps at ``[j, :T]``"""
    actions: np.ndarray
    """``(m, S, n_comp)`` int64"""
    logp: np.ndarray
    """``(m, S)`` float64"""
    handle: np.ndarray
    """``(m, S)`` int64"""
    format_ok: np.ndarray
    """``(m,)`` int f_S"""
    expert: np.ndarray
    """``(m,)`` float64 e_S"""
    instruction: np.ndarray
    """``(m, n_fields)`` int64"""
    duration: np.ndarray
    """``(m,)`` float64 simulated seconds"""
    turn: np.ndarray
    """``(m,)`` int64 main turn that issued it"""

    def rows(self, keep: np.ndarray) -> SubBlock:
        """The block of rows ``keep`` (bool ``(m,)`` or indices)."""
        per_row = {k: v[keep] for k, v in self.__dict__.items() if isinstance(v, np.ndarray)}
        obs = {k: v[keep] for k, v in self.observations.items()}
        return SubBlock(role=self.role, observations=obs, **per_row)

    def record(self, j: int, finish_order: int) -> SubTrajectory:
        """Row ``j`` as a :class:`SubTrajectory` (arrays are views of the block's)."""
        T = int(self.lengths[j])
        return SubTrajectory(
            role=self.role,
            invocation=int(self.invocation[j]),
            observations={k: v[j, :T] for k, v in self.observations.items()},
            actions=self.actions[j, :T],
            logp=self.logp[j, :T],
            handle=self.handle[j, :T],
            format_ok=int(self.format_ok[j]),
            expert=float(self.expert[j]),
            finish_order=finish_order,
            instruction=self.instruction[j],
            duration=float(self.duration[j]),
            turn=int(self.turn[j]),
        )


@dataclass
class SubColumns:
    """One role's sub-episodes of all N main episodes as flat arrays, rows sorted by (owner,
    invocation); per-step arrays concatenated over rows (row r's steps follow row r - 1's)."""

    role: str
    owner: np.ndarray
    """``(num_rows,)`` int64"""
    invocation: np.ndarray
    finish_order: np.ndarray
    format_ok: np.ndarray
    expert: np.ndarray
    lengths: np.ndarray
    """``(num_rows,)`` int64 steps per row"""
    observations: dict[str, np.ndarray]
    """each ``(num_steps, ...)``"""
    actions: np.ndarray
    """``(num_steps, n_comp)`` int64"""
    logp: np.ndarray
    handle: np.ndarray


def _rank_within(owner: np.ndarray, *keys: np.ndarray) -> np.ndarray:
    """0-based rank of each row among its owner's rows, ordered by ``keys`` (first = primary);
    ties keep row order."""
    order = np.lexsort((np.arange(len(owner)), *reversed(keys), owner))
    so = owner[order]
    first = np.searchsorted(so, so, side="left")
    rank = np.empty(len(owner), dtype=np.int64)
    rank[order] = np.arange(len(owner)) - first
    return rank


class SubRecords:
    """Columnar store of the sub-episodes of N main episodes: one :class:`SubBlock` per role per
    main step. :class:`SubTrajectory` objects are built only when asked for
    (:meth:`episode`); :meth:`columns` gives a role's rows as flat arrays.

    ``finish_order`` of a sub-episode: its rank among its episode's sub-episodes by (issuing
    turn, simulated duration, issue order)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.blocks: list[SubBlock] = []

    def add(self, block: SubBlock) -> None:
        self.blocks.append(block)

    def drop(self, idx: np.ndarray) -> None:
        """Forget the sub-episodes of episodes ``idx`` (a new block list: views handed out
        before keep theirs)."""
        if len(idx) == self.n:
            self.blocks = []
            return
        gone = np.zeros(self.n, dtype=bool)
        gone[idx] = True
        self.blocks = [b.rows(~gone[b.owner]) for b in self.blocks if not gone[b.owner].all()]

    def view(self, i: int) -> EpisodeRecords:
        """Episode ``i``'s sub-episodes as they are now (a lazy list of :class:`SubTrajectory`)."""
        return EpisodeRecords(self.blocks, len(self.blocks), i)

    def steps(self, role: str | None = None) -> np.ndarray:
        """``(N,)`` int64 sub-agent steps taken per episode (of ``role``, or of every role)."""
        out = np.zeros(self.n, dtype=np.int64)
        for b in self.blocks:
            if role is None or b.role == role:
                np.add.at(out, b.owner, b.lengths)
        return out

    def columns(self, role: str) -> SubColumns | None:
        """``role``'s sub-episodes of every episode as flat arrays (None if there are none)."""
        idx = [k for k, b in enumerate(self.blocks) if b.role == role]
        if not idx:
            return None
        cat = np.concatenate
        owner_all = cat([b.owner for b in self.blocks])
        fo_all = _rank_within(
            owner_all,
            cat([b.turn for b in self.blocks]),
            cat([b.duration for b in self.blocks]),
        )
        cuts = np.cumsum([0] + [len(b.owner) for b in self.blocks])
        bl = [self.blocks[k] for k in idx]
        owner = cat([b.owner for b in bl])
        inv = cat([b.invocation for b in bl])
        lengths = cat([b.lengths for b in bl])
        fo = cat([fo_all[cuts[k] : cuts[k + 1]] for k in idx])
        valid = [np.arange(b.actions.shape[1])[None, :] < b.lengths[:, None] for b in bl]

        def steps(get) -> np.ndarray:
            return cat([get(b)[v] for b, v in zip(bl, valid, strict=True)])

        order = np.lexsort((inv, owner))
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        new_len = lengths[order]
        new_starts = np.concatenate([[0], np.cumsum(new_len)[:-1]])
        perm = np.repeat(starts[order] - new_starts, new_len) + np.arange(int(new_len.sum()))
        return SubColumns(
            role=role,
            owner=owner[order],
            invocation=inv[order],
            finish_order=fo[order],
            format_ok=cat([b.format_ok for b in bl])[order],
            expert=cat([b.expert for b in bl])[order],
            lengths=new_len,
            observations={
                k: steps(lambda b, k=k: b.observations[k])[perm] for k in bl[0].observations
            },
            actions=steps(lambda b: b.actions)[perm],
            logp=steps(lambda b: b.logp)[perm],
            handle=steps(lambda b: b.handle)[perm],
        )


class EpisodeRecords(Sequence):
    """One episode's sub-episodes, a list of :class:`SubTrajectory` (in issue order) built
    from the store's blocks on first access."""

    def __init__(self, blocks: list[SubBlock], n_blocks: int, episode: int) -> None:
        self._blocks, self._n_blocks, self._i = blocks, n_blocks, episode
        self._items: list[SubTrajectory] | None = None

    def _build(self) -> list[SubTrajectory]:
        if self._items is None:
            picked = []
            for b in self._blocks[: self._n_blocks]:
                lo, hi = np.searchsorted(b.owner, [self._i, self._i + 1])
                picked += [(b, j) for j in range(int(lo), int(hi))]
            turn = np.array([b.turn[j] for b, j in picked], dtype=np.int64)
            dur = np.array([b.duration[j] for b, j in picked], dtype=np.float64)
            fo = _rank_within(np.zeros(len(picked), np.int64), turn, dur).tolist()
            self._items = [b.record(j, f) for (b, j), f in zip(picked, fo, strict=True)]
        return self._items

    def __getitem__(self, k):  # type: ignore[override]
        return self._build()[k]

    def __len__(self) -> int:
        return len(self._build())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(self._build())
