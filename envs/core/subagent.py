"""Sub-agent tasks: the batched rules of one specialist role's own episode.

A :class:`SubAgentTask` holds no episode state itself; the state of ``n`` sub-episodes lives in a
:class:`SubState` (struct of arrays with a leading ``n`` axis). The hierarchical engine
(:class:`envs.core.vector.HierarchicalVectorEnv`) begins one sub-episode per delegation, steps
all active ones together with the role's policy, and hands the final reports back to the main
task. :class:`SubAgentEnv` wraps one role as a plain single Gymnasium env (for testing a
specialist alone).

This module does not import the engine (``envs.core.vector`` imports it): the main env a task
reads at ``begin`` is anything with the few attributes of :class:`MainEnv`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from envs.core import rendering
from envs.core.spaces import (
    actions_allowed,
    block_offsets,
    instruction_space,
    query_id_space,
    validate_actions,
)
from envs.core.text import TextFace


class MainEnv(Protocol):
    """What a sub-agent task and :class:`SubAgentEnv` use of the main env (duck-typed)."""

    sub_tasks: dict[str, SubAgentTask]
    queries: np.ndarray
    """``(N,)`` int64 query id of each main episode"""

    def _reset_rows(
        self, idx: np.ndarray, seeds: list[int] | None, queries: np.ndarray | None
    ) -> None: ...

    def sample_instruction(self, role: str, rng: np.random.Generator) -> np.ndarray: ...


class SubState:
    """State of ``n`` sub-episodes of one role. Task-specific fields are added by ``_alloc``.

    Engine-managed fields (shapes with ``n`` sub-episodes):
        owner ``(n,)`` int64 main-episode index; query ``(n,)`` int64 the owner's query id
        (set by :meth:`SubAgentTask.begin`); instr ``(n, instruction_size)`` int64;
        t ``(n,)`` steps taken; done ``(n,)`` bool; reported ``(n,)`` bool (ended by a report);
        fmt_ok ``(n,)`` int8 (0 after a masked action); u ``(n, max_steps, n_uniforms)``
        uniforms drawn at begin; z ``(n, max_steps)`` normals (latencies) drawn at begin;
        time ``(n,)`` simulated seconds so far.
    """

    def __init__(self, n: int, task: SubAgentTask) -> None:
        self.n = n
        self.owner = np.zeros(n, dtype=np.int64)
        self.query = np.zeros(n, dtype=np.int64)
        self.instr = np.zeros((n, task.instruction_size), dtype=np.int64)
        self.t = np.zeros(n, dtype=np.int64)
        self.done = np.zeros(n, dtype=bool)
        self.reported = np.zeros(n, dtype=bool)
        self.fmt_ok = np.ones(n, dtype=np.int8)
        self.u = np.zeros((n, task.max_steps, max(task.n_uniforms, 1)), dtype=np.float64)
        self.z = np.zeros((n, task.max_steps), dtype=np.float64)
        self.time = np.zeros(n, dtype=np.float64)


class SubAgentTask(ABC):
    """Rules of one specialist role's episode, batched over sub-episodes.

    Subclasses set the class attributes and implement the six hooks (``obs_spaces``,
    ``_alloc``, ``_begin``, ``_observe``, ``mask``, ``apply``, ``result``). Every hook receives
    ``idx`` (int64 indices into the state) and must only read/write those rows. The public
    :meth:`begin` and :meth:`observe` wrap ``_begin`` / ``_observe`` and add the id fields
    (:data:`envs.core.spaces.ID_FIELDS`): ``query_id`` (the owning episode's query) and
    ``instruction`` (the instruction's value ids).

    Attributes:
        role: the role name (e.g. ``"sub"``).
        nvec: ``(n_comp,)`` MultiDiscrete sizes of the sub-agent's action.
        instruction_size: number of int fields of an instruction.
        max_steps: step cap of one sub-episode (then truncated: no report, f_S = 0).
        n_uniforms: uniforms per step available in ``state.u`` (drawn at begin).
        tools: names of the tools the sub-agent's actions use (for the latency model).
        text: the role's :class:`TextFace`.
    """

    role: str = "sub"
    nvec: np.ndarray
    instruction_size: int = 1
    max_steps: int = 4
    n_uniforms: int = 0
    tools: tuple[str, ...] = ()
    text: TextFace

    @property
    def action_space(self) -> gym.spaces.MultiDiscrete:
        return gym.spaces.MultiDiscrete(self.nvec)

    def all_obs_spaces(self) -> dict[str, gym.Space]:
        """The task's fields plus the id fields ``query_id`` and ``instruction`` (no mask)."""
        sp = dict(self.obs_spaces())
        sp["query_id"] = query_id_space()
        sp["instruction"] = self.instruction_space()
        return sp

    @property
    def observation_space(self) -> gym.spaces.Dict:
        sp = self.all_obs_spaces()
        sp["action_mask"] = gym.spaces.MultiBinary(int(self.nvec.sum()))
        return gym.spaces.Dict(sp)

    @property
    def offsets(self) -> np.ndarray:
        return block_offsets(self.nvec)

    def new_state(self, n: int) -> SubState:
        st = SubState(n, self)
        self._alloc(st)
        return st

    def instruction_space(self) -> gym.spaces.Box:
        """Space of the ``instruction`` field (override with tight bounds); default ``>= 0``."""
        return instruction_space(0, np.iinfo(np.int64).max, self.instruction_size)

    def begin(self, st: SubState, idx: np.ndarray, main: MainEnv) -> None:
        """Start sub-episodes ``idx`` (records the owners' query ids, then ``_begin``)."""
        st.query[idx] = np.asarray(main.queries)[st.owner[idx]]
        self._begin(st, idx, main)

    def observe(self, st: SubState, idx: np.ndarray) -> dict[str, np.ndarray]:
        """Observation fields of rows ``idx`` (``_observe`` plus the id fields), batched."""
        obs = self._observe(st, idx)
        obs["query_id"] = st.query[idx].copy()
        obs["instruction"] = st.instr[idx].copy()
        return obs

    # ---------------------------------------------------------------- hooks
    @abstractmethod
    def obs_spaces(self) -> dict[str, gym.Space]:
        """The task's observation fields (without ``action_mask`` and the id fields), unbatched."""

    @abstractmethod
    def _alloc(self, st: SubState) -> None:
        """Add task-specific arrays (leading axis ``st.n``) to ``st``."""

    @abstractmethod
    def _begin(self, st: SubState, idx: np.ndarray, main: MainEnv) -> None:
        """Start sub-episodes ``idx`` from ``st.instr[idx]`` (and ``main``'s state of ``st.owner``).

        A tool sees only what its caller passed: read from ``main`` only what the instruction
        hands over (e.g. the puzzle text a main agent forwards).
        """

    @abstractmethod
    def _observe(self, st: SubState, idx: np.ndarray) -> dict[str, np.ndarray]:
        """The task's observation fields for rows ``idx`` (without ``action_mask`` and the id
        fields), batched."""

    @abstractmethod
    def mask(self, st: SubState, idx: np.ndarray) -> np.ndarray:
        """Factorized action mask ``(len(idx), sum(nvec))`` int8 for rows ``idx``."""

    @abstractmethod
    def apply(
        self, st: SubState, idx: np.ndarray, actions: np.ndarray, ok: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Apply ``actions`` ``(len(idx), n_comp)`` at step ``st.t[idx]`` (rows with ``ok`` False
        are malformed: nothing happens, the step is used).

        Returns ``(ends, reported, tool)``: bool ends the episode, bool ended by a report, int
        tool id into ``tools`` for the latency (-1 = none).
        """

    @abstractmethod
    def result(self, st: SubState, idx: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Final ``(report, expert)`` of ended rows ``idx``: report fields ``(len(idx), ...)``
        handed to the main task, expert score e_S ``(len(idx),)`` in [0, 1]."""


class SubAgentEnv(gym.Env):
    """One specialist role as a single Gymnasium env (its own episode, no main agent).

    ``reset(seed=s, options={"query": q, "instruction": np.ndarray})`` resets a main episode
    of query ``q`` and begins one sub-episode with that instruction (default: the main env's
    ``sample_instruction``). Reward: e_S at the end. Stepping after the end is a no-op (the
    action is still checked against the action space). ``render_mode="ansi"``: :meth:`render`
    returns the role's text face prompt of the current observation (see
    :mod:`envs.core.rendering`).
    """

    metadata = {"render_modes": rendering.RENDER_MODES, "render_fps": rendering.RENDER_FPS}

    def __init__(self, main: MainEnv, role: str, *, render_mode: str | None = None) -> None:
        self.render_mode = rendering.check_render_mode(render_mode)
        self._main = main
        self._task = main.sub_tasks[role]
        self.role = role
        self.observation_space = self._task.observation_space
        self.action_space = self._task.action_space
        self.text = self._task.text
        self._st = self._task.new_state(1)
        self._idx = np.zeros(1, dtype=np.int64)
        self._started = False

    def render(self) -> str | None:
        """``render_mode="ansi"``: the role's text face prompt of the current observation."""
        return rendering.render(self, self._render_ansi)

    def _render_ansi(self) -> str:
        if not self._started:
            raise gym.error.ResetNeeded("call reset() before render()")
        return self.text.render(self._obs())

    def _obs(self) -> dict[str, np.ndarray]:
        obs = self._task.observe(self._st, self._idx)
        obs["action_mask"] = self._task.mask(self._st, self._idx)
        return {k: v[0, ...] for k, v in obs.items()}

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict]:
        super().reset(seed=seed)
        options = options or {}
        query = options.get("query")
        self._main._reset_rows(
            np.zeros(1, dtype=np.int64),
            None if seed is None else [seed],
            None if query is None else np.array([query], dtype=np.int64),
        )
        instr = options.get("instruction")
        if instr is None:
            instr = self._main.sample_instruction(self.role, self.np_random)
        instr = np.asarray(instr, dtype=np.int64).reshape(-1)
        if instr.shape != (self._task.instruction_size,):
            raise ValueError(
                f'options["instruction"] for role {self.role!r} must hold '
                f"{self._task.instruction_size} ints, got shape {instr.shape}"
            )
        self._st = self._task.new_state(1)
        self._st.instr[0] = instr
        self._st.u[0] = self.np_random.random(self._st.u.shape[1:])
        self._st.z[0] = self.np_random.standard_normal(self._st.z.shape[1:])
        self._task.begin(self._st, self._idx, self._main)
        self._started = True
        return self._obs(), {}

    def step(self, action: np.ndarray) -> tuple[dict, float, bool, bool, dict]:
        a = validate_actions(action, self._task.nvec, 1, who=f"{self.role} action")
        if self._st.done[0]:
            return self._obs(), 0.0, bool(self._st.reported[0]), not self._st.reported[0], {}
        mask = self._task.mask(self._st, self._idx)
        ok = actions_allowed(a, mask, self._task.offsets)
        if not ok[0]:
            self._st.fmt_ok[0] = 0
        ends, reported, _ = self._task.apply(self._st, self._idx, a, ok)
        self._st.t[0] += 1
        trunc = bool(not ends[0] and self._st.t[0] >= self._task.max_steps)
        if ends[0] or trunc:
            self._st.done[0] = True
            self._st.reported[0] = bool(ends[0] and reported[0])
        reward, info = 0.0, {}
        if self._st.done[0]:
            report, expert = self._task.result(self._st, self._idx)
            f = int(self._st.fmt_ok[0]) * int(self._st.reported[0])
            info = {"format_ok": f, "expert": float(expert[0]), "report": report}
            reward = float(f * expert[0])
        term = bool(self._st.done[0] and not trunc)
        return self._obs(), reward, term, trunc, info
