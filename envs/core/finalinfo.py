"""The engine's final info (a mixin of :class:`envs.core.vector.HierarchicalVectorEnv`).

Everything is kept as arrays: :meth:`FinalInfo.final_arrays` gives every episode's outcome as
``(N,)`` arrays, the step's ``info`` holds the arrays of the episodes that ended at that step with
their ``_key`` masks (Gymnasium's vector convention), and ``final_infos[i]`` (a lazy sequence,
:class:`FinalInfos`) builds episode i's dict only when it is read. Sub-trajectories stay in the
engine's :class:`envs.core.records.SubRecords`; the info hands out lazy views of them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

_PER_EPISODE = ("query", "correct", "format_ok", "category_errors", "sim_time", "turns")


class FinalInfos(Sequence):
    """``final_infos[i]``: episode i's final info dict (None until it ends), built from the
    engine's arrays on first read and kept until the episode is reset."""

    def __init__(self, env: Any) -> None:
        self._env = env
        self._cache: dict[int, dict[str, Any]] = {}

    def __len__(self) -> int:
        return self._env.num_envs

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        i = int(i) + (len(self) if int(i) < 0 else 0)
        if not 0 <= i < len(self):
            raise IndexError(i)
        if i not in self._cache:
            if not self._env._ended[i]:
                return None
            self._fill(np.array([i]))
        return self._cache[i]

    def __iter__(self) -> Iterator[dict[str, Any] | None]:
        todo = np.flatnonzero(self._env._ended)
        self._fill(np.array([i for i in todo.tolist() if i not in self._cache], dtype=np.int64))
        return (self._cache.get(i) for i in range(len(self)))

    def forget(self, idx: np.ndarray) -> None:
        """Drop the dicts of episodes ``idx`` (they are being reset)."""
        if len(idx) == len(self):
            self._cache = {}
        else:
            for i in np.asarray(idx).tolist():
                self._cache.pop(i, None)

    def _fill(self, idx: np.ndarray) -> None:
        if len(idx) == 0:
            return
        env = self._env
        arr = env.final_arrays(idx)
        calls = arr.pop("calls")
        cols = {k: v.tolist() for k, v in arr.items()}
        call_cols = [c.tolist() for c in calls.values()]
        for j, i in enumerate(idx.tolist()):
            info = {k: cols[k][j] for k in _PER_EPISODE}
            info["calls"] = {r: c[j] for r, c in zip(calls, call_cols, strict=True)}
            info["sub_trajectories"] = list(env.sub_records.view(i))
            info.update({k: v[j] for k, v in cols.items() if k not in _PER_EPISODE})
            info.update(env._extra_final_info(i))
            self._cache[i] = info


class FinalInfo:
    """Mixin: the engine's final info (see the module docstring)."""

    def final_arrays(self, idx: np.ndarray | None = None) -> dict[str, Any]:
        """The final info of episodes ``idx`` (default all N) as arrays ``(len(idx),)`` (an
        episode's values are final once it is done): ``query``, ``correct``, ``format_ok``,
        ``category_errors``, ``sim_time``, ``turns``, ``calls`` (role -> d_k), in flat mode
        ``flat_expert`` and ``flat_sessions``, and the task's keys (``_extra_final_arrays``)."""
        rows = np.arange(self.num_envs) if idx is None else np.asarray(idx, dtype=np.int64)
        out: dict[str, Any] = {
            "query": self.queries[rows],
            "correct": self.correct[rows],
            "format_ok": self.format_ok[rows].astype(np.int64),
            "category_errors": self.category_errors[rows],
            "sim_time": self.sim_time[rows],
            "turns": self.turn[rows],
            "calls": {r: self.calls[rows, k] for k, r in enumerate(self.subagent_roles)},
        }
        if self.flat:
            k = self._flat_sessions[rows]
            out["flat_expert"] = np.where(k > 0, self._flat_expert[rows] / np.maximum(k, 1), 0.0)
            out["flat_sessions"] = k
        out.update(self._extra_final_arrays(rows))
        return out

    def _final_info(self, idx: np.ndarray) -> dict[str, Any]:
        """The step's ``info``: the final arrays of episodes ``idx`` (ended at this step), zero
        elsewhere, each with its ``_key`` mask; ``sub_trajectories`` an object array of lazy
        lists of :class:`~envs.core.records.SubTrajectory`."""
        self._ended[idx] = True
        if len(idx) == 0:
            return {}
        n = self.num_envs
        m = np.zeros(n, dtype=bool)
        m[idx] = True
        info: dict[str, Any] = {}
        for key, v in self.final_arrays().items():
            if key == "calls":
                info["calls"] = {r: np.where(m, c, 0) for r, c in v.items()}
            else:
                info[key] = np.where(m, v, np.zeros((), dtype=v.dtype))
            info[f"_{key}"] = m.copy()
        subs = np.empty(n, dtype=object)
        for i in idx.tolist():
            subs[i] = self.sub_records.view(i)
        info["sub_trajectories"], info["_sub_trajectories"] = subs, m.copy()
        return info

    def _extra_final_arrays(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Task-specific final info keys of episodes ``rows`` as ``(len(rows),)`` arrays
        (default none)."""
        return {}

    def _extra_final_info(self, i: int) -> dict[str, Any]:
        """Task-specific keys added to episode ``i``'s final info dict only (default none;
        prefer ``_extra_final_arrays``)."""
        return {}

    @property
    def records(self) -> Sequence:
        """``records[i]``: episode i's sub-trajectories so far (a lazy list)."""
        return _Records(self)


class _Records(Sequence):
    def __init__(self, env: Any) -> None:
        self._env = env

    def __len__(self) -> int:
        return self._env.num_envs

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        return self._env.sub_records.view(int(i) % len(self))
