"""The trajectory contract: what a step's rollout records for every role, as flat arrays.

One :class:`Trajectories` holds the trajectories of one role in one training step: ``num_rows``
rows (a main episode, or one sub-agent call), each a run of consecutive env steps. Per-row values
are arrays of length ``num_rows``; per-step values are concatenated over rows (``num_steps`` in
all) and cut by ``offsets`` (row ``r`` owns steps ``offsets[r]:offsets[r + 1]``). No Python object
per row or per delegation.

A step records what any policy kind needs to recompute its log-probs later (DESIGN §5):

* the observation the policy saw (every field, ``action_mask`` included), the action it took and
  its behaviour log-prob;
* ``handle``: an int64 per step that the policy returned with its action (``-1`` when it returned
  none). A policy that keeps records of its own (a language model: the exact prompt token ids,
  the sampled response ids and their log-probs) returns the ids of those records as handles, and
  its ``export_records(handles)`` turns them into the arrays stored in ``extras`` (ragged values
  plus offsets, named by the policy kind). The trainer never re-renders or re-tokenizes.

The format is versioned (:data:`RECORDS_VERSION`) and round-trips through a flat
``dict[str, np.ndarray]`` (:meth:`Trajectories.to_arrays` / :meth:`Trajectories.from_arrays`), so
records can be stored in a file or a database and read back by another process.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np

__all__ = ["RECORDS_VERSION", "Trajectories"]

RECORDS_VERSION = 1
"""Version of the serialised layout; :meth:`Trajectories.from_arrays` refuses other versions."""

_ROW_FIELDS = {
    "rollout": np.int64,
    "invocation": np.int64,
    "finish_order": np.int64,
    "format_ok": np.float64,
    "expert": np.float64,
    "version": np.int64,
}


def _lengths_to_offsets(lengths: np.ndarray) -> np.ndarray:
    out = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=out[1:])
    return out


@dataclass
class Trajectories:
    """Trajectories of one role (``num_rows`` rows, ``num_steps`` steps in all).

    Per row, ``(num_rows,)``:
        rollout: int64 rollout id in ``[0, B*K)`` (query ``rollout // K``).
        invocation: int64 call index within its rollout (main rows: 0).
        finish_order: int64 order of finishing among the rollout's sub-agent calls (main rows: 0).
        format_ok: float64 f (f_M or f_S), in {0, 1}.
        expert: float64 e_S in [0, 1] (main rows: 0).
        version: int64 training step whose policy produced the row.
    Per step, leading axis ``num_steps``, row ``r`` at ``offsets[r]:offsets[r+1]``:
        obs: observation fields as the policy saw them (``action_mask`` included).
        actions: ``(num_steps, n_comp)`` int64.
        logp: ``(num_steps,)`` float64 behaviour log-probs as the policy returned them.
        handle: ``(num_steps,)`` int64 the policy's record id per step (-1: none).
    Other:
        role: the role's name.
        offsets: ``(num_rows + 1,)`` int64, ``offsets[0] == 0``, non-decreasing.
        extras: policy-kind arrays (e.g. token ids), keyed by the kind; any leading axis.
    """

    role: str
    rollout: np.ndarray
    invocation: np.ndarray
    finish_order: np.ndarray
    format_ok: np.ndarray
    expert: np.ndarray
    version: np.ndarray
    offsets: np.ndarray
    obs: dict[str, np.ndarray]
    actions: np.ndarray
    logp: np.ndarray
    handle: np.ndarray
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.rollout)
        for k in _ROW_FIELDS:
            v = getattr(self, k)
            if v.shape != (n,):
                raise ValueError(f"{self.role} trajectories: {k} has shape {v.shape}, want ({n},)")
        if self.offsets.shape != (n + 1,) or self.offsets[0] != 0:
            raise ValueError(
                f"{self.role} trajectories: offsets must be ({n + 1},) starting at 0, "
                f"got shape {self.offsets.shape}"
            )
        s = int(self.offsets[-1])
        steps = {"actions": self.actions, "logp": self.logp, "handle": self.handle}
        steps |= {f"obs.{k}": v for k, v in self.obs.items()}
        for k, v in steps.items():
            if len(v) != s:
                raise ValueError(
                    f"{self.role} trajectories: {k} has {len(v)} steps, offsets say {s}"
                )

    # ------------------------------------------------------------------ shape
    @property
    def num_rows(self) -> int:
        return int(len(self.rollout))

    @property
    def num_steps(self) -> int:
        return int(self.offsets[-1])

    @property
    def lengths(self) -> np.ndarray:
        """``(num_rows,)`` int64 steps per row."""
        return np.diff(self.offsets)

    def __len__(self) -> int:
        return self.num_rows

    def step_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """``(row, position)`` of every step, each ``(num_steps,)`` int64."""
        lengths = self.lengths
        row = np.repeat(np.arange(self.num_rows), lengths)
        pos = np.arange(self.num_steps) - np.repeat(self.offsets[:-1], lengths)
        return row, pos

    # ------------------------------------------------------------------ building
    @classmethod
    def from_steps(
        cls,
        role: str,
        rows: dict[str, np.ndarray],
        lengths: np.ndarray,
        obs: dict[str, np.ndarray],
        actions: np.ndarray,
        logp: np.ndarray,
        handle: np.ndarray | None = None,
        extras: dict[str, np.ndarray] | None = None,
    ) -> Trajectories:
        """Build from per-row fields (missing ones default to 0), row lengths and row-major
        step arrays."""
        lengths = np.asarray(lengths, dtype=np.int64)
        n = len(lengths)
        row_vals = {
            k: np.asarray(rows[k], dtype=t) if k in rows else np.zeros(n, dtype=t)
            for k, t in _ROW_FIELDS.items()
        }
        s = int(lengths.sum())
        actions = np.asarray(actions, dtype=np.int64)
        return cls(
            role=role,
            **row_vals,
            offsets=_lengths_to_offsets(lengths),
            obs=dict(obs),
            actions=actions.reshape(s, actions.shape[-1] if actions.ndim > 1 else 1),
            logp=np.asarray(logp, dtype=np.float64).reshape(s),
            handle=np.full(s, -1, np.int64) if handle is None else np.asarray(handle, np.int64),
            extras=dict(extras or {}),
        )

    @classmethod
    def empty(
        cls, role: str, obs_fields: dict[str, tuple[tuple[int, ...], np.dtype]], n_comp: int
    ) -> Trajectories:
        """No rows (a role nobody called this step). ``obs_fields``: name -> (shape, dtype)."""
        obs = {k: np.zeros((0, *shp), dtype=dt) for k, (shp, dt) in obs_fields.items()}
        return cls.from_steps(role, {}, np.zeros(0, np.int64), obs, np.zeros((0, n_comp)), [])

    # ------------------------------------------------------------------ serialisation
    def to_arrays(self) -> dict[str, np.ndarray]:
        """A flat ``name -> array`` dict (``np.savez``-able, storable as blobs)."""
        out: dict[str, np.ndarray] = {
            "version_": np.array(RECORDS_VERSION, dtype=np.int64),
            "role_": np.array(self.role),
            "offsets": self.offsets,
            "actions": self.actions,
            "logp": self.logp,
            "handle": self.handle,
        }
        out |= {k: getattr(self, k) for k in _ROW_FIELDS}
        out |= {f"obs.{k}": v for k, v in self.obs.items()}
        out |= {f"extras.{k}": v for k, v in self.extras.items()}
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> Trajectories:
        """Inverse of :meth:`to_arrays`; a record of another layout version is refused."""
        ver = int(arrays.get("version_", -1))
        if ver != RECORDS_VERSION:
            raise ValueError(
                f"trajectory records of layout version {ver}; this version reads "
                f"{RECORDS_VERSION} only"
            )
        get = dict(arrays)
        return cls(
            role=str(get["role_"]),
            **{k: np.asarray(get[k]) for k in _ROW_FIELDS},
            offsets=np.asarray(get["offsets"]),
            obs={k[4:]: np.asarray(v) for k, v in get.items() if k.startswith("obs.")},
            actions=np.asarray(get["actions"]),
            logp=np.asarray(get["logp"]),
            handle=np.asarray(get["handle"]),
            extras={k[7:]: np.asarray(v) for k, v in get.items() if k.startswith("extras.")},
        )

    def to_bytes(self) -> bytes:
        """The records as one ``.npz`` blob (no pickled objects)."""
        buf = io.BytesIO()
        np.savez(buf, **self.to_arrays())
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, blob: bytes) -> Trajectories:
        with np.load(io.BytesIO(blob), allow_pickle=False) as z:
            return cls.from_arrays({k: z[k] for k in z.files})

    # ------------------------------------------------------------------ rows
    def select(self, index: np.ndarray) -> Trajectories:
        """Rows ``index`` (int64, repeats allowed), steps carried along; extras are kept whole
        (they are addressed by ``handle``)."""
        index = np.asarray(index, dtype=np.int64)
        lengths = self.lengths[index]
        starts = self.offsets[:-1][index]
        steps = np.repeat(starts - _lengths_to_offsets(lengths)[:-1], lengths) + np.arange(
            int(lengths.sum())
        )
        return Trajectories.from_steps(
            self.role,
            {k: getattr(self, k)[index] for k in _ROW_FIELDS},
            lengths,
            {k: v[steps] for k, v in self.obs.items()},
            self.actions[steps],
            self.logp[steps],
            self.handle[steps],
            self.extras,
        )

    def equals(self, other: Trajectories) -> bool:
        """Exact equality of every array (for tests and round-trip checks)."""
        a, b = self.to_arrays(), other.to_arrays()
        return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
