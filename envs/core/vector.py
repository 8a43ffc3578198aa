"""The hierarchical engine: a numpy ``VectorEnv`` stepping N main episodes with embedded sub-agents.

Subclass :class:`HierarchicalVectorEnv` for a task (see ``envs/PROTOCOL.md``). The engine owns
episode bookkeeping (turns, format flag f_M, calls d_k per role, simulated time, sub-trajectory
records), per-episode random generators with their pre-drawn arrays, action validation and
masking, running delegated sub-agent episodes in batches, flat mode and the final ``info``.

Batched == single: all randomness of episode ``i`` comes from its own generator, seeded at reset
and drawn at reset into fixed arrays (``_u_main``, ``_z_main``, ``_u_sub``, ``_z_sub``,
``_u_pol``) indexed by turn / invocation / step, so an episode's trajectory does not depend on
the other episodes in the batch (given sub-agent policies that do not depend on batching).

Flat mode (the single agent, ``flat=True``): the main agent uses ``flat_role``'s tools itself,
one tool session at a time, under the turn rule :func:`flat_max_turns` (the hierarchy's budget:
every main turn may be followed by a whole sub-episode). See ``envs/PROTOCOL.md``.

Autoreset is DISABLED: after an episode is done, stepping it is a no-op that returns its final
observation, reward 0 and ``terminated``/``truncated`` unchanged; its action is still checked
against the action space (out-of-space raises) but not against the mask.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from envs.core import rendering
from envs.core.latency import LatencyModel
from envs.core.records import SubTrajectory
from envs.core.spaces import (
    actions_allowed,
    block_offsets,
    query_id_space,
    validate_actions,
)
from envs.core.subagent import SubAgentEnv, SubAgentTask, SubState
from envs.core.subruns import SubEpisodes
from envs.core.text import TextFace

SubPolicy = Callable[[dict[str, np.ndarray]], tuple]
"""``policy(obs_batch) -> (actions (n, n_comp) int64, logp (n,) float[, handles (n,) int64])``"""


@dataclass
class StepResult:
    """What the task's ``_act`` hook returns for one main step (N = number of episodes)."""

    delegations: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    """role -> (owners ``(n,)`` int64 sorted ascending, instructions ``(n, instruction_size)``)"""
    tool: np.ndarray | None = None
    """``(N,)`` int id into ``main_tools`` of the main agent's own tool used (-1 = none)"""
    answered: np.ndarray | None = None
    """``(N,)`` bool: the main agent answered (the episode terminates)"""


def flat_max_turns(main_turns: int, sub_steps: int) -> int:
    """The single agent's turn cap: ``main_turns * (1 + sub_steps)``.

    The hierarchical budget counted in agent turns: each of the main agent's ``main_turns``
    turns may delegate one sub-episode of up to ``sub_steps`` steps, so a single agent that does
    both jobs gets ``1 + sub_steps`` turns per main turn (e.g. 8 main turns, 4 sub steps: 40).
    """
    return int(main_turns) * (1 + int(sub_steps))


def _generator(seed: int | None) -> np.random.Generator:
    """The generator ``gymnasium.utils.seeding.np_random(seed)`` makes (same stream), faster."""
    if seed is None:
        return seeding.np_random(None)[0]
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seeds must be non-negative ints, got {seed!r}")
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(int(seed))))


class HierarchicalVectorEnv(SubEpisodes, VectorEnv, ABC):
    """Base class of the batched main-agent envs. See ``envs/PROTOCOL.md`` for the hooks.

    Args:
        num_envs: N, the number of main episodes stepped together.
        sub_tasks: role -> :class:`SubAgentTask` (the specialist roles; empty if none).
        main_nvec: MultiDiscrete sizes of the main action (without flat-mode tool components);
            component 0 is the action type and its last value is reserved as *malformed*.
        main_obs_spaces: main observation fields (without ``action_mask``), unbatched.
        main_tools: names of the main agent's own tools (for the latency model).
        max_turns: main-agent turn cap (then truncated). In flat mode this is the hierarchical
            budget it derives from: the single agent gets :func:`flat_max_turns` of it
            (``self.max_turns``; ``self.main_max_turns`` keeps the given value).
        max_parallel: the most delegations one main action may carry.
        flat: single-agent mode: the main agent uses ``flat_role``'s tools itself.
        latency: the :class:`LatencyModel`.
        n_main_uniforms: pre-drawn uniforms per main turn for the task (``_u_main``).
        delegate_type: the action-type value meaning "delegate" (in flat mode: "use a tool").
        flat_role: the role whose tools the main agent gets in flat mode.
        render_mode: Gymnasium's ``render_mode``: ``"ansi"`` makes :meth:`render` return the
            text face's prompt of every episode; other modes are accepted and refused at
            ``render()`` (see :mod:`envs.core.rendering`).
    """

    flat_states_sessions: bool = False
    """Flat mode: whether the agent states each tool session's instruction itself (``_act``
    returns ``delegations[flat_role] = (owners, instr)`` to open sessions; tool calls are masked
    while none is open; the observation gets ``tool_open``). False: the engine opens the next
    session itself with ``_flat_instruction`` (at reset and whenever one closes)."""

    metadata = {
        "autoreset_mode": AutoresetMode.DISABLED,
        "render_modes": rendering.RENDER_MODES,
        "render_fps": rendering.RENDER_FPS,
    }

    def __init__(
        self,
        num_envs: int,
        *,
        sub_tasks: dict[str, SubAgentTask],
        main_nvec: Sequence[int],
        main_obs_spaces: dict[str, gym.Space],
        main_tools: tuple[str, ...],
        max_turns: int,
        max_parallel: int,
        flat: bool,
        latency: LatencyModel,
        n_main_uniforms: int,
        delegate_type: int,
        flat_role: str = "sub",
        render_mode: str | None = None,
    ) -> None:
        if not isinstance(num_envs, int | np.integer) or num_envs < 1:
            raise ValueError(f"num_envs must be an int >= 1, got {num_envs!r}")
        self.num_envs = int(num_envs)
        self.render_mode = rendering.check_render_mode(render_mode)
        self.sub_tasks = dict(sub_tasks)
        self.flat = bool(flat)
        self.flat_role = flat_role
        self.main_max_turns = int(max_turns)
        self.max_turns = int(max_turns)
        self.max_parallel = int(max_parallel)
        self.latency = latency
        self.delegate_type = int(delegate_type)
        self.main_tools = main_tools
        self._main_nvec = np.asarray(main_nvec, dtype=np.int64)
        self._n_main_uniforms = int(n_main_uniforms)
        if self.flat:
            self.subagent_roles: tuple[str, ...] = ()
            ft = self.sub_tasks[flat_role]
            nvec = np.concatenate([self._main_nvec, ft.nvec])
            self.max_turns = flat_max_turns(max_turns, ft.max_steps)
            obs_sp = dict(main_obs_spaces)
            for k, sp in ft.all_obs_spaces().items():
                obs_sp[f"tool_{k}"] = sp
            if self.flat_states_sessions:
                obs_sp["tool_open"] = gym.spaces.Box(0.0, 1.0, (1,), dtype=np.float32)
        else:
            self.subagent_roles = tuple(self.sub_tasks)
            nvec = self._main_nvec
            obs_sp = dict(main_obs_spaces)
        obs_sp["query_id"] = query_id_space()
        self.nvec = nvec
        self.offsets = block_offsets(nvec)
        obs_sp["action_mask"] = gym.spaces.MultiBinary(int(nvec.sum()))
        self.single_observation_space = gym.spaces.Dict(obs_sp)
        self.single_action_space = gym.spaces.MultiDiscrete(nvec)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._policies: dict[str, SubPolicy | None] = {r: None for r in self.sub_tasks}
        self._lat = {r: latency.table(t.tools) for r, t in self.sub_tasks.items()}
        self._lat_main = latency.table(main_tools)
        self._max_sub_steps = max((t.max_steps for t in self.sub_tasks.values()), default=1)
        self._max_sub_u = max((t.n_uniforms for t in self.sub_tasks.values()), default=1)
        self._max_sub_c = max((len(t.nvec) for t in self.sub_tasks.values()), default=1)
        self._max_inv = self.max_turns * max(self.max_parallel, 1)
        n = self.num_envs
        self._rngs: list[np.random.Generator] = [seeding.np_random(None)[0] for _ in range(n)]
        self.queries = np.zeros(n, dtype=np.int64)
        self.turn = np.zeros(n, dtype=np.int64)
        self.done = np.ones(n, dtype=bool)
        self.terminated = np.zeros(n, dtype=bool)
        self.truncated = np.zeros(n, dtype=bool)
        self.format_ok = np.ones(n, dtype=np.int8)
        self.correct = np.zeros(n, dtype=np.float64)
        self.category_errors = np.zeros(n, dtype=np.int64)
        self.sim_time = np.zeros(n, dtype=np.float64)
        self.calls = np.zeros((n, len(self.sub_tasks)), dtype=np.int64)
        self._issued = np.zeros(n, dtype=np.int64)
        self.records: list[list[SubTrajectory]] = [[] for _ in range(n)]
        self.final_infos: list[dict[str, Any] | None] = [None] * n
        self._session: SubState | None = None
        self.session_open = np.zeros(n, dtype=bool)
        """flat mode: ``(N,)`` whether episode i has an open tool session (tool calls allowed)"""
        self._flat_expert = np.zeros(n, dtype=np.float64)  # sum of e_S of finished sessions
        self._flat_sessions = np.zeros(n, dtype=np.int64)  # finished sessions
        self._mask_cache: np.ndarray | None = None
        self._last_obs: dict[str, np.ndarray] | None = None
        self._alloc_random()

    # ------------------------------------------------------------------ public protocol
    @property
    def subagent_spaces(self) -> dict[str, tuple[gym.spaces.Dict, gym.spaces.MultiDiscrete]]:
        """role -> (observation space, action space) of that role's sub-agent."""
        return {r: (t.observation_space, t.action_space) for r, t in self.sub_tasks.items()}

    def set_subagent(self, role: str, policy: SubPolicy | None) -> None:
        """Use ``policy`` for ``role`` (``None``: uniform random over allowed actions)."""
        if role not in self._policies or (self.flat and role != self.flat_role):
            raise ValueError(f"unknown sub-agent role {role!r}; roles: {self.subagent_roles}")
        if policy is not None and not callable(policy):
            raise ValueError(f"policy for role {role!r} must be callable or None")
        self._policies[role] = policy

    def subagent_env(self, role: str, *, render_mode: str | None = None) -> SubAgentEnv:
        """A single Gymnasium env running only ``role``'s sub-episodes (on this env's tasks)."""
        if role not in self.sub_tasks:
            raise ValueError(f"unknown sub-agent role {role!r}; roles: {tuple(self.sub_tasks)}")
        return SubAgentEnv(type(self)(num_envs=1, **self.env_kwargs), role, render_mode=render_mode)

    def render(self) -> tuple[str, ...] | None:
        """``render_mode="ansi"``: the text face's prompt of each episode's current observation
        (a tuple of N strings, Gymnasium's vector convention)."""
        return rendering.render(self, self._render_ansi)

    def _render_ansi(self) -> tuple[str, ...]:
        if self._last_obs is None:
            raise gym.error.ResetNeeded("call reset() before render()")
        return tuple(self.text.render_batch(self._last_obs))

    env_kwargs: dict[str, Any] = {}
    text: TextFace

    # ------------------------------------------------------------------ hooks (task)
    @abstractmethod
    def _new_episodes(self, idx: np.ndarray) -> None:
        """Build the task state of episodes ``idx`` from ``self.queries[idx]``."""
        raise NotImplementedError

    @abstractmethod
    def _observe(self) -> dict[str, np.ndarray]:
        """Main observation fields for all N episodes (without ``action_mask``)."""
        raise NotImplementedError

    @abstractmethod
    def _mask(self) -> np.ndarray:
        """Main action mask ``(N, sum(main_nvec))`` int8 (without flat-mode tool blocks)."""
        raise NotImplementedError

    @abstractmethod
    def _act(self, actions: np.ndarray, ok: np.ndarray) -> StepResult:
        """Apply main actions ``(N, n_main_comp)`` of rows ``ok`` (active, allowed, not a flat
        tool step); ``self.turn`` is the 0-based turn being taken."""
        raise NotImplementedError

    @abstractmethod
    def _deliver(
        self, role: str, owners: np.ndarray, instr: np.ndarray, report: dict[str, np.ndarray]
    ) -> None:
        """Hand finished sub-episodes' reports (rows aligned with ``owners``) to the main task."""
        raise NotImplementedError

    def _flat_instruction(self, idx: np.ndarray) -> np.ndarray:
        """Instruction of flat-mode tool sessions the engine opens for episodes ``idx``:
        ``(len(idx), size)`` (with ``flat_states_sessions``: the placeholder of the session
        shown before the agent states one)."""
        return np.zeros((len(idx), self.sub_tasks[self.flat_role].instruction_size), np.int64)

    def puzzle_query(self, name: str) -> int:
        """The reserved query id of a named puzzle (``options["puzzle"]``); this env has none."""
        raise ValueError(
            f'options["puzzle"] = {name!r}: {type(self).__name__} has no named puzzles'
        )

    def sample_instruction(self, role: str, rng: np.random.Generator) -> np.ndarray:
        """A random instruction for ``role`` (used by :class:`SubAgentEnv` without one)."""
        return np.zeros(self.sub_tasks[role].instruction_size, dtype=np.int64)

    # ------------------------------------------------------------------ reset
    def reset(
        self, *, seed: int | Sequence[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Reset all N episodes. ``seed``: int (episode i gets ``seed + i``), sequence of N ints,
        or None (continue each episode slot's generator). ``options["query"]``: ``(N,)`` int64
        query ids (default: drawn from each episode's generator)."""
        n = self.num_envs
        if seed is None:
            rngs = self._rngs
        else:
            seeds = [int(seed) + i for i in range(n)] if np.isscalar(seed) else list(seed)
            if len(seeds) != n:
                raise ValueError(f"seed must be an int or {n} ints, got {len(seeds)}")
            rngs = [_generator(s) for s in seeds]
        queries = None
        if options is not None and options.get("query") is not None:
            queries = np.asarray(options["query"], dtype=np.int64).reshape(-1)
            if queries.shape != (n,) or (queries < 0).any():
                raise ValueError(f'options["query"] must be {n} non-negative ints')
        self._reset_rows(np.arange(n), rngs, queries)
        return self._obs(), {}

    def _reset_rows(
        self, idx: np.ndarray, rngs: list[np.random.Generator], queries: np.ndarray | None
    ) -> None:
        """Reset episodes ``idx`` with generators ``rngs`` (one per row) and query ids."""
        T, P, S = self.max_turns, self._max_inv, self._max_sub_steps
        um, us, up = self._u_main.shape[2], self._u_sub.shape[3], self._u_pol.shape[3]
        cuts = np.cumsum([T * um, P * S * us, P * S * up])
        m = len(idx)
        u_all = np.empty((m, int(cuts[-1])))
        z_all = np.empty((m, T + P * S))
        q = np.empty(m, dtype=np.int64)
        for j, i in enumerate(idx):
            rng = rngs[j]
            self._rngs[i] = rng
            q[j] = rng.integers(0, 2**31) if queries is None else queries[j]
            # one draw of uniforms and one of normals per episode, split below
            u_all[j] = rng.random(int(cuts[-1]))
            z_all[j] = rng.standard_normal(T + P * S)
        self.queries[idx] = q
        self._u_main[idx] = u_all[:, : cuts[0]].reshape(m, T, um)
        self._u_sub[idx] = u_all[:, cuts[0] : cuts[1]].reshape(m, P, S, us)
        self._u_pol[idx] = u_all[:, cuts[1] :].reshape(m, P, S, up)
        self._z_main[idx] = z_all[:, :T]
        self._z_sub[idx] = z_all[:, T:].reshape(m, P, S)
        self.turn[idx] = 0
        self.done[idx] = False
        self.terminated[idx] = False
        self.truncated[idx] = False
        self.format_ok[idx] = 1
        self.correct[idx] = 0.0
        self.category_errors[idx] = 0
        self.sim_time[idx] = 0.0
        self.calls[idx] = 0
        self._issued[idx] = 0
        self._flat_expert[idx] = 0.0
        self._flat_sessions[idx] = 0
        for i in idx:
            self.records[i] = []
            self.final_infos[i] = None
        self._new_episodes(idx)
        if self.flat:
            self._open_sessions(idx)
            if self.flat_states_sessions:  # a placeholder session, shown closed
                self._issued[idx] = 0
                self.session_open[idx] = False

    def _alloc_random(self) -> None:
        n, T, P, S = self.num_envs, self.max_turns, self._max_inv, self._max_sub_steps
        self._u_main = np.zeros((n, T, max(self._n_main_uniforms, 1)))
        self._z_main = np.zeros((n, T))
        self._u_sub = np.zeros((n, P, S, max(self._max_sub_u, 1)))
        self._z_sub = np.zeros((n, P, S))
        self._u_pol = np.zeros((n, P, S, self._max_sub_c))
        if self.flat:
            self._session = self.sub_tasks[self.flat_role].new_state(n)

    # ------------------------------------------------------------------ observation
    def _obs(self) -> dict[str, np.ndarray]:
        obs = self._observe()
        obs["query_id"] = self.queries.copy()
        mask = self._mask()
        if self.flat:
            task, st = self.sub_tasks[self.flat_role], self._session
            all_idx = np.arange(self.num_envs)
            for k, v in task.observe(st, all_idx).items():
                obs[f"tool_{k}"] = v
            if self.flat_states_sessions:
                obs["tool_open"] = self.session_open[:, None].astype(np.float32)
            mask = mask.copy()
            mask[:, self.delegate_type] &= self.session_open  # a tool call needs a session
            mask = np.concatenate([mask, task.mask(st, all_idx)], axis=1)
        obs["action_mask"] = mask.astype(np.int8)
        self._mask_cache = obs["action_mask"]
        self._last_obs = obs  # what render() shows
        return obs

    # ------------------------------------------------------------------ step
    def step(
        self, actions: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step all N episodes with ``actions`` ``(N, n_comp)`` int64 (done ones: no-op)."""
        n = self.num_envs
        a = validate_actions(actions, self.nvec, n)
        if self._mask_cache is None:
            raise RuntimeError("call reset() before step()")
        active = ~self.done
        cm = len(self._main_nvec)
        allowed = actions_allowed(a, self._mask_cache, self.offsets)
        if self.flat:  # the tool components count only in a tool call
            main_ok = actions_allowed(a[:, :cm], self._mask_cache, self.offsets[: cm + 1])
            allowed = np.where(a[:, 0] == self.delegate_type, allowed, main_ok)
        self.format_ok[active & ~allowed] = 0
        ok = active & allowed
        step_time = np.where(active, self.latency.think, 0.0)
        if self.flat:
            tool_rows = ok & (a[:, 0] == self.delegate_type)
            self._step_sessions(np.flatnonzero(tool_rows), a[:, cm:], step_time)
            ok = ok & ~tool_rows
        res = self._act(a[:, :cm], ok)
        if res.tool is not None:
            med, sig = self._lat_main
            rows = np.arange(n)
            z = self._z_main[rows, np.minimum(self.turn, self.max_turns - 1)]
            step_time += LatencyModel.sample(np.where(active, res.tool, -1), z, med, sig)
        sub_time = np.zeros(n)
        for role, (owners, instr) in res.delegations.items():
            if len(owners) == 0:
                continue
            if self.flat:
                if not (self.flat_states_sessions and role == self.flat_role):
                    raise RuntimeError(
                        "in flat mode a task returns delegations only to open tool sessions "
                        f"(flat_states_sessions = True, role {self.flat_role!r}), got {role!r}"
                    )
                self._state_sessions(np.asarray(owners, np.int64), instr)
                continue
            self._run_subepisodes(role, np.asarray(owners, np.int64), instr, sub_time)
        self.sim_time += step_time + sub_time
        self.turn[active] += 1
        answered = np.zeros(n, dtype=bool) if res.answered is None else res.answered & active
        self.terminated |= answered
        self.truncated |= active & ~answered & (self.turn >= self.max_turns)
        newly_done = active & (self.terminated | self.truncated)
        self.done |= newly_done
        reward = np.where(newly_done, self.format_ok * self.correct, 0.0).astype(np.float64)
        info = self._final_info(np.flatnonzero(newly_done))
        return self._obs(), reward, self.terminated.copy(), self.truncated.copy(), info

    # ------------------------------------------------------------------ info
    def _final_info(self, idx: np.ndarray) -> dict[str, Any]:
        """Per-episode final infos (kept in ``final_infos``) and their vector-convention form."""
        n = self.num_envs
        if len(idx) == 0:
            return {}
        roles = tuple(self.sub_tasks) if not self.flat else ()
        cols = [
            self.queries[idx].tolist(),
            self.correct[idx].tolist(),
            self.format_ok[idx].tolist(),
            self.calls[idx].tolist(),
            self.category_errors[idx].tolist(),
            self.sim_time[idx].tolist(),
            self.turn[idx].tolist(),
        ]
        for i, q, c, f, calls, cat, t, turns in zip(idx.tolist(), *cols, strict=True):
            recs = self.records[i]
            if len(recs) > 1:
                order = sorted(range(len(recs)), key=lambda k: (recs[k].turn, recs[k].duration, k))
                for rank, k in enumerate(order):
                    recs[k].finish_order = rank
            self.final_infos[i] = {
                "query": q,
                "correct": c,
                "format_ok": f,
                "calls": dict(zip(roles, calls, strict=False)),
                "category_errors": cat,
                "sim_time": t,
                "turns": turns,
                "sub_trajectories": recs,
                **self._flat_final_info(i),
                **self._extra_final_info(i),
            }
        m = np.zeros(n, dtype=bool)
        m[idx] = True
        info: dict[str, Any] = {}
        for key in ("correct", "format_ok", "category_errors", "sim_time", "turns", "query"):
            arr = np.zeros(n, dtype=np.float64 if key in ("correct", "sim_time") else np.int64)
            arr[idx] = [self.final_infos[i][key] for i in idx]
            info[key], info[f"_{key}"] = arr, m.copy()
        info["calls"] = {r: np.where(m, self.calls[:, k], 0) for k, r in enumerate(roles)}
        info["_calls"] = m.copy()
        subs = np.empty(n, dtype=object)
        for i in range(n):
            subs[i] = self.final_infos[i]["sub_trajectories"] if m[i] else None
        info["sub_trajectories"], info["_sub_trajectories"] = subs, m.copy()
        if self.flat:
            for key, dt in (("flat_expert", np.float64), ("flat_sessions", np.int64)):
                arr = np.zeros(n, dtype=dt)
                arr[idx] = [self.final_infos[i][key] for i in idx]
                info[key], info[f"_{key}"] = arr, m.copy()
        return info

    def _flat_final_info(self, i: int) -> dict[str, Any]:
        """Flat mode: ``flat_expert`` (mean e_S of the episode's finished tool sessions, 0.0 if
        none: the dense expert term a trainer may give the single agent) and ``flat_sessions``."""
        if not self.flat:
            return {}
        k = int(self._flat_sessions[i])
        return {"flat_expert": float(self._flat_expert[i] / k) if k else 0.0, "flat_sessions": k}

    def _extra_final_info(self, i: int) -> dict[str, Any]:
        """Task-specific keys added to episode ``i``'s final info (default none)."""
        return {}
