"""Running delegated sub-agent episodes inside the hierarchical engine (a mixin of
:class:`envs.core.vector.HierarchicalVectorEnv`).

``_run_subepisodes`` runs one whole sub-episode per delegation, batched over every delegation
of a main step, with the role's policy (or uniform random draws from the episode's stream),
records them as one :class:`SubBlock` of arrays and delivers the reports to the main task.
Flat mode (the single agent) keeps one tool session per episode instead (``_open_sessions``,
``_state_sessions`` when the agent states it, ``_step_sessions``, ``_close_sessions``, which
adds the session's e_S to the episode's ``flat_expert``). The methods read the engine's state
(``self.calls``, ``self._keys``, ``self.sub_records``, ...), set up by the engine's ``__init__``
and ``reset``.
"""

from __future__ import annotations

import numpy as np

from envs.core import streams
from envs.core.latency import LatencyModel
from envs.core.records import SubBlock
from envs.core.spaces import actions_allowed, sample_masked, validate_actions
from envs.core.subagent import SubAgentTask, SubState


class SubEpisodes:
    """Mixin: the engine's sub-agent episodes (see the module docstring)."""

    def _slice_random(
        self, task: SubAgentTask, st: SubState, rows: np.ndarray, gidx: np.ndarray
    ) -> None:
        """Draw the uniforms ``st.u`` and normals ``st.z`` of sub-episodes ``rows``, the
        ``gidx``-th invocations of their owners (counter-based: :mod:`envs.core.streams`)."""
        keys = self._keys[st.owner[rows]]
        S, U = task.max_steps, st.u.shape[2]
        st.u[rows] = streams.uniforms(
            keys[:, None, None], streams.SUB_U, streams.grid(gidx * (S * U), (S, U))
        )
        st.z[rows] = streams.normals(keys[:, None], streams.SUB_Z, streams.grid(gidx * S, (S,)))

    def _policy_uniforms(
        self, task: SubAgentTask, owners: np.ndarray, gidx: np.ndarray, t: int
    ) -> np.ndarray:
        """``(len(owners), n_comp)`` uniforms of the random sub policy at step ``t`` of the
        ``gidx``-th invocations of ``owners``."""
        C = len(task.nvec)
        base = (gidx * task.max_steps + t) * C
        keys = self._keys[owners][:, None]
        return streams.uniforms(keys, streams.POLICY_U, streams.grid(base, (C,)))

    def _run_subepisodes(
        self, role: str, owners: np.ndarray, instr: np.ndarray, sub_time: np.ndarray
    ) -> None:
        """Run one whole sub-episode per (owner, instruction), batched; record and deliver."""
        task = self.sub_tasks[role]
        r = self.subagent_roles.index(role)
        n = len(owners)
        # rank of each row among its owner's rows this step (owners sorted ascending)
        first = np.searchsorted(owners, owners, side="left")
        rank = np.arange(n) - first
        gidx = self._issued[owners] + rank
        inv = self.calls[owners, r] + rank
        np.add.at(self._issued, owners, 1)
        np.add.at(self.calls[:, r], owners, 1)
        st = task.new_state(n)
        st.owner[:] = owners
        st.instr[:] = np.asarray(instr, dtype=np.int64).reshape(n, -1)
        all_rows = np.arange(n)
        self._slice_random(task, st, all_rows, gidx)
        task.begin(st, all_rows, self)
        S, C = task.max_steps, len(task.nvec)
        obs_buf: dict[str, np.ndarray] = {}
        act_buf = np.zeros((n, S, C), dtype=np.int64)
        logp_buf = np.zeros((n, S), dtype=np.float64)
        handle_buf = np.full((n, S), -1, dtype=np.int64)
        med, sig = self._lat[role]
        policy = self._policies[role]
        for t in range(S):
            idx = np.flatnonzero(~st.done)
            if len(idx) == 0:
                break
            obs = task.observe(st, idx)
            mask = task.mask(st, idx).astype(np.int8)
            obs["action_mask"] = mask
            for k, v in obs.items():
                if k not in obs_buf:
                    obs_buf[k] = np.zeros((n, S, *v.shape[1:]), dtype=v.dtype)
                obs_buf[k][idx, t] = v
            if policy is None:
                u = self._policy_uniforms(task, owners[idx], gidx[idx], t)
                acts, lp = sample_masked(mask, task.nvec, u)
            else:
                # the fields are fresh arrays (observe), already copied into obs_buf; only the
                # mask is read again after the call, so the policy gets its own copy of it
                out = policy(obs | {"action_mask": mask.copy()})
                if not isinstance(out, tuple) or len(out) not in (2, 3):
                    raise ValueError(
                        f"sub-agent policy of role {role!r} must return (actions, logp) or "
                        f"(actions, logp, handles), got {type(out).__name__}"
                    )
                acts, lp = out[0], out[1]
                acts = validate_actions(acts, task.nvec, len(idx), who=f"{role!r} policy action")
                lp = np.asarray(lp, dtype=np.float64).reshape(len(idx))
                if len(out) == 3:
                    handle_buf[idx, t] = np.asarray(out[2], dtype=np.int64).reshape(len(idx))
            act_buf[idx, t] = acts
            logp_buf[idx, t] = lp
            ok = actions_allowed(acts, mask, task.offsets)
            st.fmt_ok[idx[~ok]] = 0
            ends, reported, tool = task.apply(st, idx, acts, ok)
            st.time[idx] += LatencyModel.sample(tool, st.z[idx, t], med, sig)
            st.t[idx] += 1
            st.done[idx[ends]] = True
            st.reported[idx[ends & reported]] = True
        st.done[:] = True
        report, expert = task.result(st, all_rows)
        np.maximum.at(sub_time, owners, st.time)
        self.sub_records.add(
            SubBlock(
                role=role,
                owner=owners,
                invocation=inv,
                lengths=st.t.copy(),
                observations=obs_buf,
                actions=act_buf,
                logp=logp_buf,
                handle=handle_buf,
                format_ok=(st.fmt_ok * st.reported).astype(np.int64),
                expert=np.asarray(expert, dtype=np.float64),
                instruction=st.instr.copy(),
                duration=st.time.copy(),
                turn=self.turn[owners].copy(),
            )
        )
        self._deliver(role, owners, st.instr, report)

    def _open_sessions(self, idx: np.ndarray, instr: np.ndarray | None = None) -> None:
        """Flat mode: begin a tool session for episodes ``idx`` with ``instr`` (default: the
        task's ``_flat_instruction``), drawing on the next invocation's random stream."""
        task, st = self.sub_tasks[self.flat_role], self._session
        st.owner[idx] = idx
        st.instr[idx] = self._flat_instruction(idx) if instr is None else instr
        st.t[idx] = 0
        st.done[idx] = False
        st.reported[idx] = False
        st.fmt_ok[idx] = 1
        st.time[idx] = 0.0
        gidx = self._issued[idx].copy()
        self._issued[idx] += 1
        self._slice_random(task, st, idx, gidx)
        task.begin(st, idx, self)
        self.session_open[idx] = True

    def _state_sessions(self, owners: np.ndarray, instr: np.ndarray) -> None:
        """Flat mode with ``flat_states_sessions``: the agent opened sessions with its own
        instructions (one per owner); a session still open is closed first, unreported."""
        owners, first = np.unique(owners, return_index=True)
        instr = np.asarray(instr, dtype=np.int64).reshape(len(first), -1)[first]
        st = self._session
        still = owners[self.session_open[owners] & ~st.done[owners]]
        if len(still):
            st.reported[still] = False
            self._close_sessions(still)
        self._open_sessions(owners, instr)

    def _close_sessions(self, idx: np.ndarray) -> None:
        """Flat mode: end the sessions of episodes ``idx``, deliver their reports as they are,
        add their e_S to the episode's ``flat_expert``; then reopen (engine-stated sessions) or
        wait for the agent to state the next one."""
        task, st = self.sub_tasks[self.flat_role], self._session
        st.done[idx] = True
        report, expert = task.result(st, idx)
        self._flat_expert[idx] += expert
        self._flat_sessions[idx] += 1
        self.session_open[idx] = False
        self._deliver(self.flat_role, idx, st.instr[idx], report)
        if not self.flat_states_sessions:
            self._open_sessions(idx)

    def _step_sessions(self, idx: np.ndarray, sub_actions: np.ndarray, step_time: np.ndarray):
        """Flat mode: apply the tool components of rows ``idx`` to their open tool sessions."""
        if len(idx) == 0:
            return
        task, st = self.sub_tasks[self.flat_role], self._session
        med, sig = self._lat[self.flat_role]
        acts = sub_actions[idx]
        ok = np.ones(len(idx), dtype=bool)  # already checked against the flat mask
        t = np.minimum(st.t[idx], task.max_steps - 1)
        ends, reported, tool = task.apply(st, idx, acts, ok)
        step_time[idx] += LatencyModel.sample(tool, st.z[idx, t], med, sig)
        st.t[idx] += 1
        closing = ends | (st.t[idx] >= task.max_steps)
        st.reported[idx] = ends & reported
        close = idx[closing]
        if len(close):
            self._close_sessions(close)
