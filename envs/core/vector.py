"""The hierarchical engine: a numpy ``VectorEnv`` stepping N main episodes with embedded sub-agents.

Subclass :class:`HierarchicalVectorEnv` for a task (see ``envs/PROTOCOL.md``). The engine owns
episode bookkeeping (turns, format flag f_M, calls d_k per role, simulated time, sub-trajectory
records as arrays), per-episode counter-based random streams, action validation and masking,
running delegated sub-agent episodes in batches (:mod:`envs.core.subruns`), flat mode and the
final ``info`` (:mod:`envs.core.finalinfo`).

Batched == single: all randomness of episode ``i`` is a pure function of its 64-bit key (set
from its seed at reset) and of the turn / invocation / step it is drawn for
(:mod:`envs.core.streams`), so an episode's trajectory does not depend on the other episodes in
the batch (given sub-agent policies that do not depend on batching).

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
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from envs.core import rendering, streams
from envs.core.finalinfo import FinalInfo, FinalInfos
from envs.core.latency import LatencyModel
from envs.core.records import SubRecords
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


class HierarchicalVectorEnv(SubEpisodes, FinalInfo, VectorEnv, ABC):
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
        n_main_uniforms: uniforms per main turn for the task (:meth:`_main_uniforms`).
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
        n = self.num_envs
        self._keys = streams.entropy_keys(n)
        """``(N,)`` uint64 each episode's random key (:mod:`envs.core.streams`)"""
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
        self.sub_records = SubRecords(n)
        """the sub-episodes of the current episodes, as arrays (``records[i]``: lazy lists)"""
        self.final_infos = FinalInfos(self)
        """``final_infos[i]``: episode i's final info dict (None before it ends), built lazily"""
        self._ended = np.zeros(n, dtype=bool)
        self._session: SubState | None = None
        self.session_open = np.zeros(n, dtype=bool)
        """flat mode: ``(N,)`` whether episode i has an open tool session (tool calls allowed)"""
        self._flat_expert = np.zeros(n, dtype=np.float64)  # sum of e_S of finished sessions
        self._flat_sessions = np.zeros(n, dtype=np.int64)  # finished sessions
        self._mask_cache: np.ndarray | None = None
        self._last_obs: dict[str, np.ndarray] | None = None
        if self.flat:
            self._session = self.sub_tasks[self.flat_role].new_state(n)

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
        or None (continue each episode slot's stream). ``options["query"]``: ``(N,)`` int64
        query ids (default: drawn from each episode's stream)."""
        n = self.num_envs
        seeds = None
        if seed is not None:
            seeds = [int(seed) + i for i in range(n)] if np.isscalar(seed) else seed
            if len(seeds) != n:
                raise ValueError(f"seed must be an int or {n} ints, got {len(seeds)}")
        queries = None
        if options is not None and options.get("query") is not None:
            queries = np.asarray(options["query"], dtype=np.int64).reshape(-1)
            if queries.shape != (n,) or (queries < 0).any():
                raise ValueError(f'options["query"] must be {n} non-negative ints')
        self._reset_rows(np.arange(n), seeds, queries)
        return self._obs(), {}

    def _reset_rows(
        self, idx: np.ndarray, seeds: Sequence[int] | np.ndarray | None, queries: np.ndarray | None
    ) -> None:
        """Reset episodes ``idx`` with ``seeds`` (one per row; None: continue each slot's
        stream) and query ids (None: drawn from the episodes' streams)."""
        idx = np.asarray(idx, dtype=np.int64)
        keys = streams.next_keys(self._keys[idx]) if seeds is None else streams.seed_keys(seeds)
        self._keys[idx] = keys
        self.queries[idx] = streams.query_ids(keys) if queries is None else queries
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
        self._ended[idx] = False
        self.sub_records.drop(idx)
        self.final_infos.forget(idx)
        self._new_episodes(idx)
        if self.flat:
            self._open_sessions(idx)
            if self.flat_states_sessions:  # a placeholder session, shown closed
                self._issued[idx] = 0
                self.session_open[idx] = False

    def _main_uniforms(self) -> np.ndarray:
        """``(N, n_main_uniforms)`` uniforms of each episode's current turn (for the task)."""
        k = max(self._n_main_uniforms, 1)
        base = np.minimum(self.turn, self.max_turns - 1) * k
        return streams.uniforms(self._keys[:, None], streams.MAIN_U, streams.grid(base, (k,)))

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
            turn = np.minimum(self.turn, self.max_turns - 1)
            z = streams.normals(self._keys, streams.MAIN_Z, turn)
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
